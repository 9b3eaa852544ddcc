//! What each operation requires of its caller (`oneflow::access`), written
//! into the document as `x-oneflow-permission`, with the 403 a credential
//! whose role lacks it gets. The handlers enforce it through their caller
//! extractor (`access.rs`); `tests/e2e/access.rs` calls every operation
//! with a credential of each role and checks the answers against this and
//! the table in `docs/auth.md`, and fails on an operation missing here.

use oneflow::access::Permission::{self, *};

/// (method, path, permission) of every documented operation.
pub const PERMISSIONS: &[(&str, &str, Permission)] = &[
    ("get", "/health", Public),
    ("get", "/api/openapi.json", Public),
    ("get", "/api/docs", Public),
    ("get", "/api/docs/assets/{file}", Public),
    ("get", "/api/redoc", Public),
    ("post", "/api/auth/register", Public),
    ("post", "/api/auth/login", Public),
    ("post", "/api/auth/refresh", Public),
    ("post", "/api/auth/logout", Public),
    ("post", "/api/invitations", Administer),
    ("post", "/api/webhooks", Manage),
    ("get", "/api/webhooks", Read),
    ("get", "/api/webhooks/{id}", Read),
    ("delete", "/api/webhooks/{id}", Manage),
    ("post", "/api/webhooks/{id}/rotate-secret", Manage),
    ("get", "/api/webhooks/{id}/deliveries", Read),
    ("post", "/api/reports/send-now", Read),
    ("post", "/api/reconcile", Administer),
    ("get", "/api/reconcile", Administer),
    ("get", "/api/reconcile/{id}", Administer),
    ("post", "/api/teams", Manage),
    ("get", "/api/teams", Read),
    ("get", "/api/teams/{id}", Read),
    ("put", "/api/teams/{id}/members/{user_id}", Manage),
    ("delete", "/api/teams/{id}/members/{user_id}", Manage),
    ("post", "/api/teams/{id}/keys", Manage),
    ("post", "/api/teams/{id}/invitations", Manage),
    ("post", "/api/teams/{id}/credits", TopUp),
    ("get", "/api/teams/{id}/wallet", Read),
    ("put", "/api/teams/{id}/budget", Manage),
    ("get", "/api/teams/{id}/requests", Read),
    ("post", "/api/experiments", Administer),
    ("get", "/api/experiments", Administer),
    ("get", "/api/experiments/{id}", Administer),
    ("post", "/api/experiments/{id}/stop", Administer),
    ("post", "/api/experiments/{id}/promote", Administer),
    ("delete", "/api/experiments/{id}/promotion", Administer),
    ("post", "/api/feedback", Spend),
    ("get", "/api/status", Read),
    ("get", "/api/providers", Read),
    ("get", "/api/config", Administer),
    ("get", "/api/backup", Administer),
    ("post", "/api/users", Administer),
    ("get", "/api/users", Administer),
    ("post", "/api/credits/add", Administer),
    ("post", "/api/keys", Manage),
    ("get", "/api/keys", Read),
    ("delete", "/api/keys/{id}", Manage),
    ("get", "/api/budget", Read),
    ("put", "/api/budget", Manage),
    ("get", "/api/routing", Read),
    ("put", "/api/routing", Manage),
    ("post", "/api/quote", Spend),
    ("post", "/api/request", Spend),
    ("post", "/api/jobs", Spend),
    ("get", "/api/jobs/{id}", Read),
    ("get", "/api/jobs/{id}/content", Read),
    ("get", "/api/history/requests", Read),
    ("get", "/api/history/requests/{id}", Read),
    ("get", "/api/history/transactions", Read),
    ("get", "/api/analytics", Read),
    ("get", "/api/analytics/series", Read),
    ("get", "/api/analytics/burndown", Read),
    ("get", "/api/analytics/groups", Read),
    ("get", "/api/dashboards", Read),
    ("get", "/api/dashboards/{name}", Read),
    ("put", "/api/dashboards/{name}", Manage),
    ("delete", "/api/dashboards/{name}", Manage),
    ("get", "/api/dashboards/{name}/panels/{index}", Read),
    ("get", "/api/export/analytics", Export),
    ("get", "/api/export/{kind}", Export),
    ("get", "/v1/models", Read),
    ("post", "/v1/chat/completions", Spend),
    ("post", "/v1/completions", Spend),
    ("post", "/v1/embeddings", Spend),
    ("post", "/v1/images/generations", Spend),
    ("post", "/v1/audio/speech", Spend),
    ("post", "/v1/audio/transcriptions", Spend),
    ("post", "/v1/audio/translations", Spend),
    ("post", "/v1/responses", Spend),
    ("get", "/v1/responses/{id}", Read),
    ("post", "/v1/messages", Spend),
    ("post", "/v1/messages/count_tokens", Spend),
];

/// The permission of one operation, if listed.
pub fn permission(method: &str, path: &str) -> Option<Permission> {
    PERMISSIONS
        .iter()
        .find(|(m, p, _)| *m == method && *p == path)
        .map(|(_, _, need)| *need)
}

/// Writes each operation's permission in, and its 403 (in the shape of
/// its 401) where some role lacks the permission.
pub(super) struct Permissions;

impl utoipa::Modify for Permissions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::extensions::ExtensionsBuilder;
        for (path, item) in openapi.paths.paths.iter_mut() {
            let ops = [
                ("get", &mut item.get),
                ("put", &mut item.put),
                ("post", &mut item.post),
                ("delete", &mut item.delete),
                ("patch", &mut item.patch),
            ];
            for (method, op) in ops {
                let Some(op) = op else { continue };
                let Some(need) = permission(method, path) else {
                    continue;
                };
                let ext = ExtensionsBuilder::new()
                    .add("x-oneflow-permission", need.name())
                    .build();
                match &mut op.extensions {
                    Some(e) => e.merge(ext),
                    None => op.extensions = Some(ext),
                }
                let r = &mut op.responses.responses;
                let Some(RefOr::T(shape)) = r.get("401").cloned() else {
                    continue;
                };
                let lacking: Vec<&str> = oneflow::access::Role::ALL
                    .into_iter()
                    .filter(|role| !oneflow::access::allows(*role, need))
                    .map(|role| role.name())
                    .collect();
                if lacking.is_empty() {
                    continue;
                }
                let why = format!(
                    "Forbidden: the credential's role ({}) does not allow `{}` (docs/auth.md)",
                    lacking.join(", "),
                    need.name()
                );
                match r.get_mut("403") {
                    // Administrators' routes say so themselves.
                    Some(_) if need == oneflow::access::Permission::Administer => {}
                    Some(RefOr::T(existing)) => {
                        existing.description = format!("{}; or {why}", existing.description);
                    }
                    _ => {
                        let mut forbidden = shape;
                        forbidden.description = why;
                        r.insert("403".into(), RefOr::T(forbidden));
                    }
                }
            }
        }
    }
}

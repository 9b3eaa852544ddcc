//! How each answer looks to a person. Figures are printed with the API's
//! own decimal text, so a table and `--json` never disagree.

use serde_json::Value;

use super::table::{Table, fields, percent, short, text, time};

pub fn user_created(v: &Value) -> String {
    let mut out = fields(&[
        ("id", text(&v["id"])),
        ("name", text(&v["name"])),
        ("email", text(&v["email"])),
        ("role", text(&v["role"])),
        ("balance", text(&v["balance"])),
        ("api key", text(&v["api_key"])),
    ]);
    out.push_str("The API key is shown only this once: keep it.\n");
    out
}

pub fn users(v: &Value) -> String {
    let mut t = Table::new(&["ID", "NAME", "EMAIL", "ROLE", "CREATED"]);
    for u in v["users"].as_array().into_iter().flatten() {
        t.row(vec![
            text(&u["id"]),
            text(&u["name"]),
            text(&u["email"]),
            text(&u["role"]),
            time(&u["created_at"]),
        ]);
    }
    t.render()
}

pub fn key_created(v: &Value) -> String {
    let mut out = fields(&[
        ("id", text(&v["id"])),
        ("user", text(&v["user_id"])),
        ("role", text(&v["role"])),
        ("api key", text(&v["api_key"])),
    ]);
    out.push_str("The API key is shown only this once: keep it.\n");
    out
}

pub fn keys(v: &Value) -> String {
    let mut t = Table::new(&["ID", "USER", "ROLE", "PREFIX", "CREATED"]);
    for k in v["keys"].as_array().into_iter().flatten() {
        t.row(vec![
            text(&k["id"]),
            text(&k["user_id"]),
            text(&k["role"]),
            format!("{}…", text(&k["prefix"])),
            time(&k["created_at"]),
        ]);
    }
    t.render()
}

pub fn key_revoked(v: &Value) -> String {
    format!(
        "revoked {} (user {})\n",
        text(&v["key"]["id"]),
        text(&v["key"]["user_id"])
    )
}

pub fn credits_added(v: &Value) -> String {
    fields(&[
        ("user", text(&v["user_id"])),
        ("added", text(&v["added"])),
        ("balance", text(&v["balance"])),
        ("available", text(&v["available"])),
    ])
}

pub fn request(v: &Value) -> String {
    let tokens = format!(
        "{} in, {} out",
        text(&v["usage"]["input_tokens"]),
        text(&v["usage"]["output_tokens"])
    );
    let mut out = fields(&[
        ("request", text(&v["request_id"])),
        ("status", text(&v["status"])),
        ("model", text(&v["model"])),
        ("provider", text(&v["provider"])),
        ("quote", text(&v["quote"])),
        ("cost", text(&v["cost"])),
        ("balance", text(&v["balance"])),
        ("tokens", tokens),
        ("latency", format!("{} ms", text(&v["latency_ms"]))),
        ("route", text(&v["route"])),
    ]);
    if let Some(r) = v["response"].as_str() {
        out.push('\n');
        out.push_str(r);
        out.push('\n');
    }
    out
}

pub fn requests(v: &Value) -> String {
    let mut t = Table::new(&[
        "ID", "TIME", "MODEL", "PROVIDER", "STATUS", "COST>", "LATENCY>", "PROMPT",
    ]);
    for r in v["items"].as_array().into_iter().flatten() {
        t.row(vec![
            text(&r["id"]),
            time(&r["created_at"]),
            text(&r["model"]),
            text(&r["provider"]),
            text(&r["status"]),
            text(&r["cost"]),
            format!("{} ms", text(&r["latency_ms"])),
            short(r["prompt_preview"].as_str().unwrap_or(""), 40),
        ]);
    }
    page(t, v, "no requests yet")
}

pub fn transactions(v: &Value) -> String {
    let mut t = Table::new(&[
        "SEQ>",
        "TIME",
        "KIND",
        "AMOUNT>",
        "BALANCE>",
        "AVAILABLE>",
        "REQUEST / NOTE",
    ]);
    for e in v["items"].as_array().into_iter().flatten() {
        let about = e["request_id"]
            .as_str()
            .or(e["note"].as_str())
            .map_or_else(|| "-".to_string(), |s| short(s, 40));
        t.row(vec![
            text(&e["seq"]),
            time(&e["at"]),
            text(&e["kind"]),
            text(&e["amount"]),
            text(&e["balance_after"]),
            text(&e["available_after"]),
            about,
        ]);
    }
    page(t, v, "no transactions yet")
}

fn page(t: Table, v: &Value, empty: &str) -> String {
    let mut out = if t.is_empty() {
        format!("{empty}\n")
    } else {
        t.render()
    };
    if let Some(c) = v["next_cursor"].as_str() {
        out.push_str(&format!("more: --cursor {c}\n"));
    }
    out
}

pub fn analytics(v: &Value) -> String {
    let who = v["user_id"].as_str().unwrap_or("all users");
    let mut out = fields(&[
        ("user", who.to_string()),
        ("requests", text(&v["total_requests"])),
        ("successes", text(&v["total_successes"])),
        ("success rate", percent(&v["success_rate"])),
        ("cost", text(&v["total_cost"])),
    ]);
    let mut t = Table::new(&[
        "PROVIDER",
        "REQUESTS>",
        "OK>",
        "FAILED>",
        "SUCCESS>",
        "COST>",
        "TOKENS IN>",
        "TOKENS OUT>",
        "MEAN MS>",
    ]);
    // Providers keyed by name, or (a richer analytics answer) a list of
    // objects naming their provider.
    let providers: Vec<(String, &Value)> = match &v["providers"] {
        Value::Object(m) => m.iter().map(|(k, p)| (k.clone(), p)).collect(),
        Value::Array(a) => a
            .iter()
            .map(|p| {
                (
                    text(p.get("provider").or(p.get("name")).unwrap_or(&Value::Null)),
                    p,
                )
            })
            .collect(),
        _ => Vec::new(),
    };
    for (name, p) in providers {
        t.row(vec![
            name,
            text(&p["requests"]),
            text(&p["successes"]),
            text(&p["failures"]),
            percent(&p["success_rate"]),
            text(&p["cost"]),
            text(&p["input_tokens"]),
            text(&p["output_tokens"]),
            p["mean_latency_ms"]
                .as_f64()
                .map_or_else(|| text(&p["mean_latency_ms"]), |ms| format!("{ms:.1}")),
        ]);
    }
    if !t.is_empty() {
        out.push('\n');
        out.push_str(&t.render());
    }
    out
}

pub fn status(v: &Value) -> String {
    let up = v["providers_up"].as_array().map_or(0, Vec::len);
    fields(&[
        ("user", text(&v["user_id"])),
        ("role", text(&v["role"])),
        ("balance", text(&v["balance"])),
        ("available", text(&v["available"])),
        ("held", text(&v["held"])),
        (
            "providers up",
            format!("{up} of {}", text(&v["providers_total"])),
        ),
        ("version", text(&v["version"])),
        ("uptime", format!("{} s", text(&v["uptime_secs"]))),
    ])
}

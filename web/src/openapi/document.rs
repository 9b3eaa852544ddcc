//! The OpenAPI document as this server serves it, built once at start:
//! the derived [`ApiDoc`] with what only the configuration knows written
//! in, so that the schema refuses what the server refuses.

use utoipa::OpenApi;

use super::ApiDoc;

/// The document as this server serves it: [`ApiDoc`] with what only the
/// configuration knows written in, so that the schema refuses what the
/// server refuses. A model is one of the configured providers' names or
/// model names, of the modality the operation serves; a provider is one of
/// the configured names. Built once, at start.
pub fn document(config: &oneflow::config::Config) -> Result<String, String> {
    use oneflow::pricing::Modality;
    use serde_json::{Value, json};
    let mut doc = serde_json::to_value(ApiDoc::openapi()).map_err(|e| e.to_string())?;
    let models = |modality: Option<Modality>| -> Value {
        let mut names: Vec<&str> = config
            .providers
            .iter()
            .filter(|p| modality.is_none_or(|m| p.modality == m))
            .flat_map(|p| {
                std::iter::once(p.name.as_str()).chain(p.models.iter().map(String::as_str))
            })
            .collect();
        names.sort_unstable();
        names.dedup();
        json!(names)
    };
    let mut providers: Vec<&str> = config.providers.iter().map(|p| p.name.as_str()).collect();
    providers.sort_unstable();
    let providers = json!(providers);
    let schemas = &mut doc["components"]["schemas"];
    for (schema, modality) in [
        ("AiRequest", None),
        ("ChatCompletionRequest", Some(Modality::Text)),
        ("CompletionRequest", Some(Modality::Text)),
        ("EmbeddingRequest", Some(Modality::Text)),
        ("ImageRequest", Some(Modality::Image)),
        ("SpeechRequest", Some(Modality::Audio)),
        ("MessagesRequest", Some(Modality::Text)),
        ("CountTokensRequest", Some(Modality::Text)),
        ("ResponsesRequest", Some(Modality::Text)),
        ("TranscriptionForm", Some(Modality::Audio)),
    ] {
        let props = &mut schemas[schema]["properties"];
        if props.is_null() {
            return Err(format!("schema {schema} has no properties"));
        }
        props["model"]["enum"] = models(modality);
    }
    schemas["AiRequest"]["properties"]["provider"]["enum"] = {
        // The field is optional and may be null.
        let mut v = providers.as_array().cloned().unwrap_or_default();
        v.push(Value::Null);
        Value::Array(v)
    };
    schemas["RouteWish"]["properties"]["providers"]["items"]["enum"] = providers.clone();
    // The bounds the providers' request limits set (the largest any
    // provider of the modality takes).
    let most = |modality: Modality, f: fn(&oneflow::config::RequestLimits) -> u32| -> u32 {
        config
            .providers
            .iter()
            .filter(|p| p.modality == modality)
            .map(|p| f(&p.request))
            .max()
            .unwrap_or(1)
    };
    // A native request takes the fields of its model's modality only: one
    // branch per modality, its models named, the other modalities' fields
    // allowed only as null, bounds from the providers' limits.
    let base = schemas["AiRequest"].clone();
    let mut branches = Vec::new();
    for (modality, own) in [
        (Modality::Text, &["max_tokens"][..]),
        (Modality::Image, &["n", "size"][..]),
        (Modality::Audio, &["seconds"][..]),
        (Modality::Video, &["seconds"][..]),
    ] {
        let names = models(Some(modality));
        if names.as_array().is_none_or(|a| a.is_empty()) {
            continue;
        }
        let mut b = base.clone();
        let props = &mut b["properties"];
        props["model"]["enum"] = names;
        props["prompt"]["pattern"] = json!(r"\S");
        // Whole micro-credits, as every amount a client sends (see
        // `amount` below): a double with more places is refused.
        let about = props["max_price"]["description"].clone();
        props["max_price"] = json!({
            "type": ["number", "string", "null"],
            "multipleOf": 0.000001,
            "minimum": -1e12,
            "maximum": 1e12,
            "pattern": r"^-?[0-9]{1,12}(\.[0-9]{1,6})?$",
            "description": about,
        });
        props["prompt"]["maxLength"] = json!(config.server.max_prompt_chars);
        for field in ["max_tokens", "n", "size", "seconds"] {
            if !own.contains(&field) {
                props[field] = json!({"type": "null"});
            }
        }
        let of = |f: fn(&oneflow::config::RequestLimits) -> u32| most(modality, f);
        let count = |max: u32| json!({"type": ["integer", "null"], "minimum": 1, "maximum": max});
        match modality {
            Modality::Text => props["max_tokens"] = count(of(|l| l.max_tokens)),
            Modality::Image => {
                props["n"] = count(of(|l| l.max_images));
                let mut sizes: Vec<Value> = config
                    .providers
                    .iter()
                    .filter(|p| p.modality == modality)
                    .flat_map(|p| p.request.sizes.iter().map(|s| json!(s)))
                    .collect();
                sizes.sort_by_key(|v| v.to_string());
                sizes.dedup();
                sizes.push(Value::Null);
                props["size"] = json!({"enum": sizes});
            }
            Modality::Audio | Modality::Video => {
                props["seconds"] = count(of(|l| l.max_seconds));
            }
        }
        b["additionalProperties"] = json!(false);
        b["title"] = json!(format!("AiRequest ({})", modality.name()));
        branches.push(b);
    }
    // `POST /api/jobs` takes video requests only: the video branch, with an
    // example of the first video model.
    let job = branches
        .iter()
        .find(|b| b["title"] == "AiRequest (video)")
        .cloned()
        .map(|mut b| {
            let model = models(Some(Modality::Video))[0].clone();
            let seconds = most(Modality::Video, |l| l.default_seconds);
            b["title"] = json!("JobRequest");
            b["description"] = json!("A native request of a video model.");
            b["example"] = json!({"model": model, "prompt": "A paper boat on a pond at dawn", "seconds": seconds});
            b
        });
    let mut either = json!({"anyOf": branches});
    for key in ["description", "example", "examples"] {
        if let Some(v) = base.get(key) {
            either[key] = v.clone();
        }
    }
    schemas["AiRequest"] = either;
    let has_jobs = job.is_some();
    if let Some(job) = job {
        schemas["JobRequest"] = job;
    }
    // What user creation and top-ups check beyond their types (see
    // `usecase/users.rs`): trimmed names and addresses, amounts above or at
    // zero.
    // A report's explicit range takes the times the query parameters do.
    for end in ["from", "to"] {
        schemas["SendNow"]["properties"][end]["pattern"] = json!(oneflow::time::TIME_PATTERN);
    }
    let user = &mut schemas["NewUser"]["properties"];
    user["name"]["pattern"] = json!(r"\S");
    user["name"]["maxLength"] = json!(200);
    user["email"]["pattern"] = json!(r"^\s*[^\s@][\s\S]*@[\s\S]*[^\s@]\s*$");
    user["email"]["maxLength"] = json!(320);
    // Amounts clients send: as numbers, whole micro-credits (JSON Schema's
    // `multipleOf`, which the server reads through a double's rounding, see
    // `Credits::from_float_text`); as strings, plain decimals. Only inputs
    // say `multipleOf`: a checker dividing a double answer (0.3) by 1e-6
    // would find a remainder the exact amount does not have.
    let amount = |minimum: &str, pattern: &str| {
        let mut v = json!({
            "type": ["number", "string"],
            "multipleOf": 0.000001,
            "maximum": 1e12,
            "pattern": pattern,
            "description": "Credits as a decimal number with at most 6 places; a string holding such a number is accepted too.",
        });
        v[minimum] = json!(0);
        v
    };
    user["initial_balance"] = amount("minimum", r"^[0-9]{1,12}(\.[0-9]{1,6})?$");
    for top_up in ["AddCredits", "TeamCredits"] {
        schemas[top_up]["properties"]["amount"] = amount(
            "exclusiveMinimum",
            r"^(?=[0-9.]*[1-9])[0-9]{1,12}(\.[0-9]{1,6})?$",
        );
    }
    // A budget as sent: caps not negative, whole micro-credits; null or
    // absent for no cap.
    let cap = {
        let mut c = amount("minimum", r"^[0-9]{1,12}(\.[0-9]{1,6})?$");
        c["type"] = json!(["number", "string", "null"]);
        c
    };
    let limits = json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {"daily": cap, "weekly": cap, "monthly": cap},
    });
    let mut budget_in = schemas["BudgetConfig"].clone();
    if budget_in.is_null() {
        return Err("schema BudgetConfig is missing".into());
    }
    budget_in["additionalProperties"] = json!(false);
    for w in ["daily", "weekly", "monthly"] {
        budget_in["properties"][w] = cap.clone();
    }
    let per_provider = json!({
        "type": "object",
        "propertyNames": {"enum": providers.clone()},
        "additionalProperties": limits,
    });
    budget_in["properties"]["per_provider"] = per_provider.clone();
    // Spenders' own caps: the same caps, by a spender's id.
    budget_in["properties"]["spenders"] = json!({
        "type": "object",
        "maxProperties": oneflow::budget::MAX_SPENDERS,
        "propertyNames": {"pattern": oneflow::budget::SPENDER_ID_PATTERN, "minLength": 1, "maxLength": 128},
        "additionalProperties": {
            "type": "object",
            "additionalProperties": false,
            "properties": {"daily": cap, "weekly": cap, "monthly": cap, "per_provider": per_provider},
        },
    });
    // A new key's scope as sent (`usecase/scopes.rs`): configured names,
    // each once; its own caps as a spender's.
    let mut key_caps = budget_in["properties"]["spenders"]["additionalProperties"].clone();
    key_caps["type"] = json!(["object", "null"]);
    schemas["BudgetConfigInput"] = budget_in;
    for schema in ["NewKey", "NewTeamKey"] {
        let props = &mut schemas[schema]["properties"];
        for (field, names) in [("models", models(None)), ("providers", providers.clone())] {
            let about = props[field]["description"].clone();
            props[field] = json!({
                "type": ["array", "null"],
                "minItems": 1,
                "maxItems": oneflow::key_scope::MAX_SCOPE_NAMES,
                "uniqueItems": true,
                "items": {"type": "string", "enum": names},
                "description": about,
            });
        }
        key_caps["description"] = props["budget"]["description"].clone();
        props["budget"] = key_caps.clone();
    }
    let tokens = json!(most(Modality::Text, |l| l.max_tokens));
    for (schema, field, max) in [
        ("ChatCompletionRequest", "max_tokens", &tokens),
        ("ChatCompletionRequest", "max_completion_tokens", &tokens),
        ("CompletionRequest", "max_tokens", &tokens),
        ("MessagesRequest", "max_tokens", &tokens),
        ("ResponsesRequest", "max_output_tokens", &tokens),
        (
            "ImageRequest",
            "n",
            &json!(most(Modality::Image, |l| l.max_images)),
        ),
    ] {
        let p = &mut schemas[schema]["properties"][field];
        if p.is_null() {
            return Err(format!("schema {schema} has no {field}"));
        }
        p["minimum"] = json!(1);
        p["maximum"] = max.clone();
    }
    if has_jobs {
        doc["paths"]["/api/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"] =
            json!({"$ref": "#/components/schemas/JobRequest"});
    }
    let put_budget = &mut doc["paths"]["/api/budget"]["put"]["requestBody"]["content"]["application/json"]
        ["schema"];
    if put_budget.is_null() {
        return Err("PUT /api/budget has no JSON body".into());
    }
    *put_budget = json!({"$ref": "#/components/schemas/BudgetConfigInput"});
    let put_team_budget = &mut doc["paths"]["/api/teams/{id}/budget"]["put"]["requestBody"]["content"]
        ["application/json"]["schema"];
    if put_team_budget.is_null() {
        return Err("PUT /api/teams/{id}/budget has no JSON body".into());
    }
    *put_team_budget = json!({"$ref": "#/components/schemas/BudgetConfigInput"});
    // `x-oneflow-providers`: configured names, comma-separated; time
    // parameters: what `parse_time` reads.
    let names: Vec<String> = config
        .providers
        .iter()
        .map(|p| regex_escape(&p.name))
        .collect();
    let one = format!("(?:{})", names.join("|"));
    let list = format!("^ *(?:{one} *)?(?:, *(?:{one} *)?)*$");
    if let Some(paths) = doc["paths"].as_object_mut() {
        for item in paths.values_mut() {
            for op in item
                .as_object_mut()
                .into_iter()
                .flat_map(|o| o.values_mut())
            {
                let params = op.get_mut("parameters").and_then(Value::as_array_mut);
                for p in params.into_iter().flatten() {
                    if p["name"] == "x-oneflow-providers" {
                        p["schema"]["pattern"] = json!(list);
                    }
                    // Every time parameter is read by `parse_time`, whose
                    // pattern lives beside it (not configuration, but one
                    // string for every operation that takes a range).
                    if p["in"] == "query" && (p["name"] == "from" || p["name"] == "to") {
                        p["schema"]["pattern"] = json!(oneflow::time::TIME_PATTERN);
                    }
                }
            }
        }
    }
    serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())
}

/// `s` as a regular expression that matches only itself.
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

use super::*;

const DAY: i64 = 20_000; // 2024-10-04
const START: i64 = DAY * 86_400;

fn sum(rows: &[Row]) -> BTreeMap<CellKey, Tally> {
    cells(rows, Some("p")).unwrap().0
}

fn cell(m: &BTreeMap<CellKey, Tally>, model: &str) -> Tally {
    m[&(DAY, "p".to_string(), model.to_string())].clone()
}

#[test]
fn openai_usage_and_costs_pages_make_one_cell_per_day_and_model() {
    let usage = serde_json::json!({"object": "page", "data": [{"object": "bucket",
        "start_time": START, "end_time": START + 86_400, "results": [
            {"object": "organization.usage.completions.result", "model": "m1",
             "input_tokens": 100, "output_tokens": 50, "num_model_requests": 2},
            {"object": "organization.usage.completions.result", "model": "m1",
             "input_tokens": 1, "output_tokens": 1, "batch": true}]}]});
    let costs = serde_json::json!({"object": "page", "data": [{"object": "bucket",
        "start_time": START, "end_time": START + 86_400, "results": [
            {"object": "organization.costs.result", "amount": {"value": 0.06, "currency": "usd"},
             "line_item": "m1, input"},
            {"object": "organization.costs.result", "amount": {"value": 6e-05, "currency": "usd"},
             "line_item": "m1, output"}]}]});
    let body = serde_json::to_vec(&serde_json::json!([usage, costs])).unwrap();
    let (f, rows) = read(None, &body).unwrap();
    assert_eq!(f, Format::OpenaiJson);
    let m = sum(&rows);
    assert_eq!(m.len(), 1);
    assert_eq!(
        cell(&m, "m1"),
        Tally {
            input_tokens: Some(101),
            output_tokens: Some(51),
            cost: Some(Credits(60_060)),
        }
    );
}

#[test]
fn anthropic_reports_count_every_input_token_and_read_cents() {
    let body = serde_json::json!([
        {"data": [{"starting_at": "2024-10-04T00:00:00Z", "ending_at": "2024-10-05T00:00:00Z",
          "results": [{"model": "c1", "uncached_input_tokens": 10, "cache_read_input_tokens": 5,
                       "cache_creation": {"ephemeral_5m_input_tokens": 2, "ephemeral_1h_input_tokens": 1},
                       "output_tokens": 7}]}], "has_more": false, "next_page": null},
        {"data": [{"starting_at": "2024-10-04T00:00:00Z", "ending_at": "2024-10-05T00:00:00Z",
          "results": [{"model": "c1", "currency": "USD", "amount": "123.45", "cost_type": "tokens"}]}]}
    ]);
    let (f, rows) = read(None, &serde_json::to_vec(&body).unwrap()).unwrap();
    assert_eq!(f, Format::Anthropic);
    assert_eq!(
        cell(&sum(&rows), "c1"),
        Tally {
            input_tokens: Some(18),
            output_tokens: Some(7),
            cost: Some(Credits(1_234_500)),
        }
    );
}

#[test]
fn csv_exports_by_their_headers() {
    let generic = "day,model,input_tokens,output_tokens,cost\n2024-10-04,m1,3,4,0.5\n2024-10-04,m1,1,1,0.25\n";
    let (f, rows) = read(None, generic.as_bytes()).unwrap();
    assert_eq!(f, Format::Csv);
    assert_eq!(
        cell(&sum(&rows), "m1"),
        Tally {
            input_tokens: Some(4),
            output_tokens: Some(5),
            cost: Some(Credits(750_000)),
        }
    );
    let openai = format!(
        "start_time,end_time,model,input_tokens,output_tokens,amount_value\n{START},{},m1,3,4,0.5\n",
        START + 86_400
    );
    let (f, rows) = read(None, openai.as_bytes()).unwrap();
    assert_eq!(f, Format::OpenaiCsv);
    assert_eq!(cell(&sum(&rows), "m1").cost, Some(Credits(500_000)));
    // A provider column names each row's provider.
    let mixed = "day,provider,model,input_tokens,output_tokens,cost\n2024-10-04,a,m,1,1,1\n2024-10-04,b,m,1,1,1\n";
    let (_, rows) = read(None, mixed.as_bytes()).unwrap();
    assert_eq!(cells(&rows, None).unwrap().0.len(), 2);
}

#[test]
fn broken_exports_are_refused_with_a_reason() {
    let cases: &[(&str, Option<Format>, &str)] = &[
        (
            "day,model,input_tokens,output_tokens,cost\n2024-10-04,m,-3,4,1\n",
            None,
            "negative",
        ),
        (
            "day,model,input_tokens,output_tokens,cost\n2024-10-04,m,1.5,4,1\n",
            None,
            "whole number",
        ),
        (
            "day,model,input_tokens,output_tokens,cost\n2024-02-30,m,1,4,1\n",
            None,
            "not a day",
        ),
        (
            "day,model,input_tokens,output_tokens,cost\n2024-10-04,m,1,4,-1\n",
            None,
            "negative",
        ),
        (
            "day,model,input_tokens,output_tokens,cost\n\"2024-10-04,m,1,4,1\n",
            None,
            "not closed",
        ),
        (
            "day,model,output_tokens,cost\n2024-10-04,m,4,1\n",
            None,
            "input_tokens",
        ),
        ("when,what\n1,2\n", None, "neither"),
        ("{\"data\": 5}", None, "list of buckets"),
        (
            "{\"data\": [{\"start_time\": 1, \"results\": [{\"model\": \"m\", \"input_tokens\": -1, \"output_tokens\": 0}]}]}",
            None,
            "negative",
        ),
        (
            "{\"data\": [{\"start_time\": 1, \"results\": [{\"model\": null, \"input_tokens\": 1, \"output_tokens\": 0}]}]}",
            None,
            "no model",
        ),
        ("{\"data\": [{\"when\": 1}]}", None, "neither"),
        (
            "{\"data\": [{\"start_time\": 1, \"results\": []}]}",
            Some(Format::Anthropic),
            "does not look like",
        ),
        ("day,model\n", Some(Format::OpenaiJson), "not JSON"),
        ("{nope", None, "valid JSON"),
        ("[1, 2]", None, "page object"),
    ];
    for (body, format, says) in cases {
        match read(*format, body.as_bytes())
            .and_then(|(_, rows)| cells(&rows, Some("p")).map(|_| ()))
        {
            Err(ExportError::Malformed(m)) => assert!(m.contains(says), "{body}: {m}"),
            other => panic!("{body}: {other:?}"),
        }
    }
}

#[test]
fn bounds_on_rows_and_days() {
    let mut big = String::from("day,model,input_tokens,output_tokens,cost\n");
    for _ in 0..=MAX_ROWS {
        big.push_str("2024-10-04,m,1,1,1\n");
    }
    assert_eq!(
        read(None, big.as_bytes()).err(),
        Some(ExportError::TooManyRows)
    );
    let wide =
        "day,model,input_tokens,output_tokens,cost\n2024-01-01,m,1,1,1\n2024-10-04,m,1,1,1\n";
    let (_, rows) = read(None, wide.as_bytes()).unwrap();
    assert!(matches!(
        cells(&rows, Some("p")),
        Err(ExportError::TooManyDays(_))
    ));
    let none = "day,model,input_tokens,output_tokens,cost\n2024-10-04,m,1,1,1\n";
    let (_, rows) = read(None, none.as_bytes()).unwrap();
    assert!(cells(&rows, None).is_err());
}

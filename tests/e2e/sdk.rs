//! The official `openai` Python SDK against the broker's `/v1`: chat, a
//! streamed chat with usage, embeddings, an image and `models.list`, with
//! the ledger checked against the usage the upstream reported.

use std::process::Command;

use reqwest::StatusCode;
use serde_json::Value;

use oneflow::Credits;
use oneflow::config::ProviderKind;
use oneflow::ledger::EntryKind;
use oneflow::pricing::Modality;

use crate::providers::provider;
use crate::support::{TestServer, assert_ledger_balances};
use crate::upstream::{DEFAULT_ANSWER_WORDS, Kind, MockUpstream};

/// Runs the SDK script against `base` (ending in /v1); its JSON report.
pub fn run_sdk_script(python: &std::path::Path, base: &str, key: &str, image_model: &str) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/sdk/openai_sdk.py");
    let out = Command::new(python)
        .arg(script)
        .env("ONEFLOW_BASE_URL", base)
        .env("ONEFLOW_KEY", key)
        .env("ONEFLOW_CHAT_MODEL", "mock-chat")
        .env("ONEFLOW_EMBED_MODEL", "mock-embed")
        .env("ONEFLOW_IMAGE_MODEL", image_model)
        .env("NO_PROXY", "127.0.0.1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the SDK script failed: {stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_openai_python_sdk_works_against_v1_and_the_ledger_matches_upstream_usage() {
    let python = crate::tools::sdk_python();
    let up = MockUpstream::start(Kind::OpenAi);
    let s = TestServer::start_with(|c| {
        let mut embed = provider(
            "embedder",
            ProviderKind::Openai,
            Modality::Text,
            &up,
            &["mock-embed"],
        );
        embed.rates.per_output_token = Credits::ZERO;
        c.providers = vec![
            provider(
                "chatter",
                ProviderKind::Openai,
                Modality::Text,
                &up,
                &["mock-chat"],
            ),
            embed,
            provider(
                "painter",
                ProviderKind::Openai,
                Modality::Image,
                &up,
                &["mock-image"],
            ),
        ];
    });
    let (_, key) = s.user("sdk", "100").await;
    let base = format!("{}/v1", s.url);
    let report = {
        let key = key.clone();
        tokio::task::spawn_blocking(move || run_sdk_script(&python, &base, &key, "mock-image"))
            .await
            .unwrap()
    };

    // The SDK saw the upstream's own figures, unchanged.
    let prompt = report["prompt_words"].as_u64().unwrap();
    for step in ["chat", "stream"] {
        assert_eq!(report[step]["prompt_tokens"], prompt, "{report}");
        assert_eq!(
            report[step]["completion_tokens"],
            DEFAULT_ANSWER_WORDS as u64
        );
    }
    assert_eq!(report["embed"]["prompt_tokens"], 3);
    assert_eq!(report["embed"]["count"], 2);
    assert_eq!(report["image"]["images"], 1);
    let models: Vec<&str> = report["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    for m in ["mock-chat", "mock-embed", "mock-image"] {
        assert!(models.contains(&m), "{m} not in {models:?}");
    }

    // The ledger charged exactly that usage at the rate cards.
    let text = |i: u64, o: u64| Credits(i as i64 * 1_000 + o as i64 * 3_000);
    let want = vec![
        text(prompt, DEFAULT_ANSWER_WORDS as u64),
        text(prompt, DEFAULT_ANSWER_WORDS as u64),
        text(3, 0),
        Credits::from_credits(2),
    ];
    let ledger = s.ledger(&key).await;
    let charged: Vec<Credits> = ledger
        .iter()
        .filter(|e| e.kind == EntryKind::Charge)
        .map(|e| e.amount)
        .collect();
    assert_eq!(charged, want);
    let balance = s.balance(&key).await;
    assert_eq!(
        balance,
        Credits::from_credits(100) - want.iter().fold(Credits::ZERO, |a, b| a + *b)
    );
    assert_ledger_balances(&ledger, balance);
    let (st, history) = s.get(&key, "/api/history/requests?limit=10").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(history["items"].as_array().unwrap().len(), 4, "{history}");
    s.stop().await;
}

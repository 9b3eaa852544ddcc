//! `/v1/audio/transcriptions` and `/translations`: a real WAV file in a
//! real form, charged by its seconds; the upload passed to an
//! OpenAI-protocol upstream; what cannot be timed or is too large refused;
//! the official SDK.

use reqwest::StatusCode;
use serde_json::Value;

use oneflow::Credits;
use oneflow::config::ProviderKind;
use oneflow::pricing::Modality;

use crate::providers::provider;
use crate::support::{TestServer, assert_ledger_balances};
use crate::upstream::{Kind, MockUpstream};

/// A 16-bit mono PCM WAV of `samples` frames at 16 kHz.
fn wav(samples: usize) -> Vec<u8> {
    let data = samples * 2;
    let mut b = Vec::new();
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data as u32).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&16_000u32.to_le_bytes());
    b.extend_from_slice(&32_000u32.to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&(data as u32).to_le_bytes());
    b.extend((0..samples).flat_map(|i| ((i % 200) as i16 * 100).to_le_bytes()));
    b
}

const BOUNDARY: &str = "test-boundary-4b1d";

/// A `multipart/form-data` body: the text fields, then the file.
fn form(fields: &[(&str, &str)], file: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    for (k, v) in fields {
        b.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    b.extend_from_slice(
        format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"talk.wav\"\r\nContent-Type: audio/wav\r\n\r\n")
            .as_bytes(),
    );
    b.extend_from_slice(file);
    b.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    b
}

async fn upload(s: &TestServer, key: &str, path: &str, body: Vec<u8>) -> (StatusCode, String) {
    let res = s
        .http
        .post(format!("{}{path}", s.url))
        .bearer_auth(key)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    let st = res.status();
    (st, res.text().await.unwrap())
}

/// A simulated speech-to-text provider at 0.01 credits a second, and the
/// OpenAI mock's `whisper` at 0.02.
fn per_second(up: &MockUpstream) -> TestServer {
    let mut sim = oneflow::config::default_providers()[2].clone();
    sim.name = "listener".into();
    sim.rates = Default::default();
    sim.rates.per_second = Credits(10_000);
    let mut mock = provider(
        "whisper",
        ProviderKind::Openai,
        Modality::Audio,
        up,
        &["whisper-1"],
    );
    mock.rates = Default::default();
    mock.rates.per_second = Credits(20_000);
    TestServer::start_with(move |c| {
        c.providers = vec![sim, mock];
        c.server.max_audio_bytes = 200_000;
    })
}

#[tokio::test]
async fn a_recording_is_transcribed_and_charged_by_its_seconds() {
    let up = MockUpstream::start(Kind::OpenAi);
    let s = per_second(&up);
    let (_, key) = s.user("listener", "10").await;
    // 2.5 s of audio: three started seconds.
    let audio = wav(40_000);
    let (st, body) = upload(
        &s,
        &key,
        "/v1/audio/transcriptions",
        form(&[("model", "listener"), ("language", "en")], &audio),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["text"], "Simulated transcript of 3 seconds of audio.");
    assert_eq!(v["usage"]["seconds"], 3);
    assert_eq!(s.charges(&key).await, vec![Credits(30_000)]);

    // As bare text, and a translation.
    let (st, body) = upload(
        &s,
        &key,
        "/v1/audio/translations",
        form(
            &[("model", "listener"), ("response_format", "text")],
            &wav(16_000),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body, "Simulated translation of 1 seconds of audio.");

    // To an OpenAI-protocol upstream: the form as OpenAI takes it, the
    // file whole.
    let (st, body) = upload(
        &s,
        &key,
        "/v1/audio/transcriptions",
        form(&[("model", "whisper-1"), ("prompt", "a talk")], &audio),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let sent = &up.requests()[0];
    assert_eq!(sent.path, "/v1/audio/transcriptions");
    let raw = String::from_utf8_lossy(&sent.raw_body);
    assert!(raw.contains("name=\"prompt\"\r\n\r\na talk"), "{raw:.300}");
    assert!(
        sent.raw_body
            .windows(audio.len())
            .any(|w| w == audio.as_slice()),
        "the file did not arrive whole"
    );
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["text"].as_str().unwrap().starts_with("mock transcript"),
        "{v}"
    );
    assert_eq!(
        s.charges(&key).await,
        vec![Credits(30_000), Credits(10_000), Credits(60_000)]
    );
    assert_ledger_balances(&s.ledger(&key).await, s.balance(&key).await);
    s.stop().await;
}

#[tokio::test]
async fn what_cannot_be_timed_or_is_too_large_is_refused_before_anything_is_held() {
    let up = MockUpstream::start(Kind::OpenAi);
    let s = per_second(&up);
    let (_, key) = s.user("careless-listener", "10").await;
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (
            form(&[("model", "listener")], b"ID3\x03 an mp3"),
            422,
            "WAV",
        ),
        (form(&[], &wav(100)), 400, "model"),
        (
            form(
                &[("model", "listener"), ("response_format", "srt")],
                &wav(100),
            ),
            400,
            "srt",
        ),
        (
            form(&[("model", "listener"), ("temperature", "hot")], &wav(100)),
            400,
            "temperature",
        ),
        (
            form(&[("model", "listener"), ("colour", "red")], &wav(100)),
            400,
            "colour",
        ),
        // 6.25 s at 32 KB a second is over the 200,000-byte bound.
        (form(&[("model", "listener")], &wav(100_000)), 413, "200000"),
    ];
    for (body, status, names) in cases {
        let (st, text) = upload(&s, &key, "/v1/audio/transcriptions", body).await;
        assert_eq!(st.as_u16(), status, "{text}");
        assert!(text.contains(names), "{text}");
    }
    // Not a form at all.
    let (st, v) = s
        .post(
            &key,
            "/v1/audio/transcriptions",
            serde_json::json!({"model": "listener"}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(s.charges(&key).await.is_empty());
    assert_eq!(up.request_count(), 0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_sdk_transcribes_a_wav_file_it_made() {
    let up = MockUpstream::start(Kind::OpenAi);
    let s = per_second(&up);
    let (_, key) = s.user("sdk-listener", "10").await;
    let report = crate::tools::run_sdk(
        "openai_audio.py",
        vec![
            ("ONEFLOW_BASE_URL", format!("{}/v1", s.url)),
            ("ONEFLOW_KEY", key.clone()),
            ("ONEFLOW_AUDIO_MODEL", "listener".into()),
        ],
    )
    .await;
    // The script's WAV is 1.5 s: two started seconds at 0.01.
    assert_eq!(report["seconds"].as_f64(), Some(2.0), "{report}");
    assert_eq!(s.charges(&key).await, vec![Credits(20_000)]);
    assert_eq!(
        s.balance(&key).await,
        Credits::from_credits(10) - Credits(20_000)
    );
    assert_ledger_balances(&s.ledger(&key).await, s.balance(&key).await);
    s.stop().await;
}

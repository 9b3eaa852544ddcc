//! `/v1/audio/transcriptions` and `/translations`: a real WAV file in a
//! real form, charged by its seconds; MP3, M4A, Ogg and WebM recordings
//! made by FFmpeg (tests/fixtures/audio/) charged by theirs; the upload
//! passed to an OpenAI-protocol upstream; what cannot be timed or is too
//! large refused; the official SDK.

use reqwest::StatusCode;
use serde_json::Value;

use oneflow::Credits;
use oneflow::config::ProviderKind;
use oneflow::pricing::Modality;

use crate::providers::provider;
use crate::support::{TestServer, assert_ledger_balances};
use crate::upstream::{Kind, MOCK_API_KEY, MockUpstream};

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

/// Recordings FFmpeg made of 2.5 s of a tone (tests/fixtures/audio/).
const CBR_MP3: &[u8] = include_bytes!("../fixtures/audio/cbr.mp3");
const XING_MP3: &[u8] = include_bytes!("../fixtures/audio/vbr-xing.mp3");
const M4A: &[u8] = include_bytes!("../fixtures/audio/tone.m4a");
const OGG_OPUS: &[u8] = include_bytes!("../fixtures/audio/opus.ogg");
const LIVE_WEBM: &[u8] = include_bytes!("../fixtures/audio/live.webm");

/// `n` bytes of noise from a fixed seed (xorshift).
fn noise(n: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The M4A fixture with its movie header saying 108,000 ticks of a second.
fn thirty_hours() -> Vec<u8> {
    let mut b = M4A.to_vec();
    let mvhd = b.windows(4).position(|w| w == b"mvhd").unwrap();
    // Type, version 0 and flags, two times, then the timescale and duration.
    let scale = mvhd + 4 + 4 + 8;
    b[scale..scale + 4].copy_from_slice(&1u32.to_be_bytes());
    b[scale + 4..scale + 8].copy_from_slice(&108_000u32.to_be_bytes());
    b
}

const BOUNDARY: &str = "test-boundary-4b1d";

/// A `multipart/form-data` body: the text fields, then the file as
/// `talk.wav`.
fn form(fields: &[(&str, &str)], file: &[u8]) -> Vec<u8> {
    form_named(fields, Some("talk.wav"), file)
}

/// A form whose file goes by `name` (or by none).
fn form_named(fields: &[(&str, &str)], name: Option<&str>, file: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    for (k, v) in fields {
        b.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    let file_name = name
        .map(|n| format!("; filename=\"{n}\""))
        .unwrap_or_default();
    b.extend_from_slice(
        format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"{file_name}\r\nContent-Type: application/octet-stream\r\n\r\n")
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
async fn mp3_m4a_ogg_and_webm_recordings_are_charged_by_the_seconds_they_hold() {
    let up = MockUpstream::start(Kind::OpenAi);
    let s = per_second(&up);
    let (_, key) = s.user("format-listener", "10").await;
    // Each holds 2.5 s, three started seconds at 0.01 (the simulated
    // provider): an MP3 timed by its frames, an M4A by its movie header.
    for (name, file) in [("tone.mp3", CBR_MP3), ("tone.m4a", M4A)] {
        let (st, body) = upload(
            &s,
            &key,
            "/v1/audio/transcriptions",
            form_named(&[("model", "listener")], Some(name), file),
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{name}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["usage"]["seconds"], 3, "{name}: {v}");
        assert_eq!(v["text"], "Simulated transcript of 3 seconds of audio.");
    }
    assert_eq!(
        s.charges(&key).await,
        vec![Credits(30_000), Credits(30_000)]
    );

    // To the OpenAI-protocol mock, which (like OpenAI) takes these
    // formats only under a matching name: an MP3 with a Xing header, an
    // Ogg Opus translated, and a browser's WebM sent without a file name,
    // which OneFlow names by its bytes. Three seconds at 0.02 each.
    let cases = [
        (
            "/v1/audio/transcriptions",
            Some("talk.mp3"),
            XING_MP3,
            "mp3",
        ),
        ("/v1/audio/translations", Some("talk.ogg"), OGG_OPUS, "ogg"),
        ("/v1/audio/transcriptions", None, LIVE_WEBM, "webm"),
    ];
    for (i, (path, name, file, kind)) in cases.into_iter().enumerate() {
        let (st, body) = upload(
            &s,
            &key,
            path,
            form_named(&[("model", "whisper-1")], name, file),
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{kind}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(
            v["text"].as_str().unwrap().ends_with(&format!("({kind})")),
            "{v}"
        );
        let sent = &up.requests()[i];
        assert_eq!(sent.path, path);
        assert!(
            sent.raw_body.windows(file.len()).any(|w| w == file),
            "the {kind} file did not arrive whole"
        );
        let file_name = format!("filename=\"{}\"", name.unwrap_or("audio.webm"));
        assert!(
            String::from_utf8_lossy(&sent.raw_body).contains(&file_name),
            "{kind}: sent without {file_name}"
        );
    }
    assert_eq!(
        s.charges(&key).await,
        vec![
            Credits(30_000),
            Credits(30_000),
            Credits(60_000),
            Credits(60_000),
            Credits(60_000)
        ]
    );
    assert_ledger_balances(&s.ledger(&key).await, s.balance(&key).await);
    s.stop().await;
}

/// The mock takes what OpenAI takes: a format it knows by its bytes,
/// under a name with its extension.
#[tokio::test]
async fn the_openai_mock_refuses_what_openai_would() {
    let up = MockUpstream::start(Kind::OpenAi);
    let client = reqwest::Client::new();
    for (name, file, status) in [
        ("a.mp3", XING_MP3, 200),
        ("a.m4a", M4A, 200),
        ("a.wav", &wav(1600)[..], 200),
        ("a.txt", XING_MP3, 400),
        ("a.mp3", &noise(5000)[..], 400),
    ] {
        let res = client
            .post(format!("{}/v1/audio/transcriptions", up.base_url()))
            .bearer_auth(MOCK_API_KEY)
            .header(
                "content-type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(form_named(&[("model", "whisper-1")], Some(name), file))
            .send()
            .await
            .unwrap();
        let st = res.status().as_u16();
        let text = res.text().await.unwrap();
        assert_eq!(st, status, "{name}: {text}");
        if status == 400 {
            assert!(text.contains("Invalid file format"), "{text}");
        }
    }
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
            "cannot be read",
        ),
        // Random bytes named as an MP3: the bytes decide.
        (
            form_named(&[("model", "listener")], Some("noise.mp3"), &noise(50_000)),
            422,
            "cannot be read",
        ),
        // An M4A whose header claims 30 hours is not billed as such.
        (
            form_named(&[("model", "listener")], Some("long.m4a"), &thirty_hours()),
            422,
            "24 hours",
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
async fn the_openai_sdk_transcribes_a_wav_file_it_made_and_an_mp3() {
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
    // The script's WAV is 1.5 s: two started seconds at 0.01. Its MP3
    // (the FFmpeg fixture) is 2.5 s: three.
    assert_eq!(report["seconds"].as_f64(), Some(2.0), "{report}");
    assert_eq!(report["mp3_seconds"].as_f64(), Some(3.0), "{report}");
    assert_eq!(
        report["mp3_text"],
        "Simulated transcript of 3 seconds of audio."
    );
    assert_eq!(
        s.charges(&key).await,
        vec![Credits(20_000), Credits(30_000)]
    );

    // The same through the OpenAI mock (`whisper-1`, 0.02 a second): the
    // upload reaches it as OpenAI takes it, and the same seconds are
    // charged at its rate.
    let report = crate::tools::run_sdk(
        "openai_audio.py",
        vec![
            ("ONEFLOW_BASE_URL", format!("{}/v1", s.url)),
            ("ONEFLOW_KEY", key.clone()),
            ("ONEFLOW_AUDIO_MODEL", "whisper-1".into()),
        ],
    )
    .await;
    assert_eq!(report["seconds"].as_f64(), Some(2.0), "{report}");
    assert_eq!(report["mp3_seconds"].as_f64(), Some(3.0), "{report}");
    assert!(
        report["mp3_text"]
            .as_str()
            .unwrap()
            .starts_with("mock transcript"),
        "{report}"
    );
    assert_eq!(up.request_count(), 2);
    assert_eq!(
        s.charges(&key).await,
        vec![
            Credits(20_000),
            Credits(30_000),
            Credits(40_000),
            Credits(60_000)
        ]
    );
    assert_eq!(
        s.balance(&key).await,
        Credits::from_credits(10) - Credits(150_000)
    );
    assert_ledger_balances(&s.ledger(&key).await, s.balance(&key).await);
    s.stop().await;
}

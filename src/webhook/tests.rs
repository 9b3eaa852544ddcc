use super::*;

const SECRET: &str = "whsec_test";
const T: i64 = 1_700_000_000;
const BODY: &[u8] = br#"{"id":"evt_1"}"#;

// Computed apart from this code, with Python's standard library:
//   hmac.new(b"whsec_test", b'1700000000.{"id":"evt_1"}', hashlib.sha256).hexdigest()
const KNOWN: &str = "c89214b5b5da833daed6f0b8c5bb6bd58cea9022bd80ccc78230f3942d632925";

#[test]
fn signatures_match_an_independent_hmac() {
    assert_eq!(sign(SECRET, T, BODY), KNOWN);
    assert_eq!(
        signature::header(&[SECRET], T, BODY),
        format!("t={T},v1={KNOWN}")
    );
}

#[test]
fn a_good_signature_verifies_and_a_tampered_one_does_not() {
    let h = signature::header(&[SECRET], T, BODY);
    assert_eq!(verify(&h, SECRET, BODY, T + 10, TOLERANCE_SECS), Ok(()));
    assert_eq!(
        verify(&h, SECRET, br#"{"id":"evt_2"}"#, T, TOLERANCE_SECS),
        Err(VerifyError::Mismatch),
        "tampered body"
    );
    assert_eq!(
        verify(&h, "whsec_other", BODY, T, TOLERANCE_SECS),
        Err(VerifyError::Mismatch),
        "wrong secret"
    );
    // A changed timestamp changes what was signed.
    let moved = h.replace(&format!("t={T}"), &format!("t={}", T + 1));
    assert_eq!(
        verify(&moved, SECRET, BODY, T, TOLERANCE_SECS),
        Err(VerifyError::Mismatch)
    );
}

#[test]
fn old_and_future_timestamps_are_refused() {
    let h = signature::header(&[SECRET], T, BODY);
    assert_eq!(verify(&h, SECRET, BODY, T + 300, 300), Ok(()));
    assert_eq!(
        verify(&h, SECRET, BODY, T + 301, 300),
        Err(VerifyError::Expired)
    );
    assert_eq!(
        verify(&h, SECRET, BODY, T - 301, 300),
        Err(VerifyError::Expired)
    );
}

#[test]
fn during_a_rotation_either_secret_verifies() {
    let h = signature::header(&["whsec_new", "whsec_old"], T, BODY);
    assert_eq!(h.matches(",v1=").count(), 2);
    assert_eq!(verify(&h, "whsec_new", BODY, T, 300), Ok(()));
    assert_eq!(verify(&h, "whsec_old", BODY, T, 300), Ok(()));
    assert_eq!(
        verify(&h, "whsec_neither", BODY, T, 300),
        Err(VerifyError::Mismatch)
    );
}

#[test]
fn malformed_headers_are_refused_without_panicking() {
    for h in [
        "",
        "t=",
        "v1=00",
        &format!("t={T}"),
        &format!("t={T},v1=zz"),
        &format!("t={T},v1=abc"),
        &format!("t=x,v1={KNOWN}"),
        &format!("t={T},t={T},v1={KNOWN}"),
        &"a".repeat(5000),
        "t=1,,v1=00",
    ] {
        assert_eq!(
            verify(h, SECRET, BODY, T, 300),
            Err(VerifyError::Malformed),
            "{h:.40}"
        );
    }
    // An unknown scheme beside a good v1 is ignored.
    let h = format!("t={T},v0=ff,v1={KNOWN}");
    assert_eq!(verify(&h, SECRET, BODY, T, 300), Ok(()));
}

fn spec(url: &str, events: &[EventKind]) -> WebhookSpec {
    WebhookSpec {
        url: url.into(),
        events: events.to_vec(),
        balance_below: None,
        failure_rate: None,
        failure_window_minutes: None,
    }
}

#[test]
fn specs_are_checked_and_defaulted() {
    use EventKind::*;
    let ok = spec(
        "https://example.com/h",
        &[KeyRevoked, RequestFailures, KeyRevoked],
    )
    .check(false)
    .unwrap();
    assert_eq!(ok.events, vec![KeyRevoked, RequestFailures]);
    assert_eq!((ok.failure_rate, ok.failure_window_minutes), (0.5, 5));
    let refused = |s: WebhookSpec, allow: bool, what: &str| {
        let e = s.check(allow).unwrap_err();
        assert!(e.contains(what), "{e}");
    };
    refused(spec("https://example.com/h", &[]), false, "`events`");
    refused(spec("ftp://example.com/h", &[KeyRevoked]), false, "http");
    refused(
        spec("http://127.0.0.1:9/h", &[KeyRevoked]),
        false,
        "loopback",
    );
    assert!(
        spec("http://127.0.0.1:9/h", &[KeyRevoked])
            .check(true)
            .is_ok()
    );
    refused(
        spec("https://169.254.169.254/", &[KeyRevoked]),
        false,
        "metadata",
    );
    // A user's URL may not reach the operator's private networks either.
    for private in [
        "http://10.0.0.5/h",
        "http://192.168.1.2/h",
        "http://[fd00::1]/h",
    ] {
        refused(spec(private, &[KeyRevoked]), false, "private-network");
        assert!(spec(private, &[KeyRevoked]).check(true).is_ok());
    }
    refused(
        spec("https://example.com/h", &[BalanceLow]),
        false,
        "balance_below",
    );
    refused(spec("https://\u{cf}", &[KeyRevoked]), false, "URI");
    refused(spec("https://example.com/a b", &[KeyRevoked]), false, "URI");
    refused(
        spec(
            &format!("https://example.com/{}", "a".repeat(3000)),
            &[KeyRevoked],
        ),
        false,
        "longer",
    );
    for (rate, ok) in [(0.0, false), (1.0, true), (1.5, false), (f64::NAN, false)] {
        let mut s = spec("https://example.com/h", &[RequestFailures]);
        s.failure_rate = Some(rate);
        assert_eq!(s.check(false).is_ok(), ok, "{rate}");
    }
    for (minutes, ok) in [(0, false), (1, true), (1440, true), (1441, false)] {
        let mut s = spec("https://example.com/h", &[RequestFailures]);
        s.failure_window_minutes = Some(minutes);
        assert_eq!(s.check(false).is_ok(), ok, "{minutes}");
    }
}

#[test]
fn backoff_doubles_to_an_hour_and_jitter_only_shortens() {
    assert_eq!(backoff_ms(1, 0.0), 1_000);
    assert_eq!(backoff_ms(2, 0.0), 2_000);
    assert_eq!(backoff_ms(3, 0.0), 4_000);
    assert_eq!(backoff_ms(13, 0.0), MAX_BACKOFF_MS);
    assert_eq!(backoff_ms(u32::MAX, 0.0), MAX_BACKOFF_MS);
    assert_eq!(backoff_ms(1, 1.0), 800);
    for j in [0.0, 0.3, 0.99, f64::NAN, -4.0, 9.0] {
        let d = backoff_ms(5, j);
        assert!((12_800..=16_000).contains(&d), "{j}: {d}");
    }
}

#[test]
fn every_threshold_reached_is_reported() {
    let c = Credits::from_credits;
    assert_eq!(thresholds_reached(c(49), c(100)), Vec::<u8>::new());
    assert_eq!(thresholds_reached(c(50), c(100)), vec![50]);
    assert_eq!(thresholds_reached(c(80), c(100)), vec![50, 80]);
    assert_eq!(thresholds_reached(c(20), c(25)), vec![50, 80]);
    assert_eq!(thresholds_reached(c(300), c(100)), vec![50, 80, 100]);
    assert_eq!(thresholds_reached(c(5), Credits::ZERO), Vec::<u8>::new());
}

#[test]
fn failure_windows_and_rates() {
    assert_eq!(failure_window_start(299_999, 5), 0);
    assert_eq!(failure_window_start(300_000, 5), 300_000);
    assert!(!failing(9, 9, 0.5), "too few requests to judge");
    assert!(failing(10, 6, 0.5));
    assert!(!failing(10, 5, 0.5), "above the rate, not at it");
    assert!(failing(10, 10, 0.99));
}

#[test]
fn the_default_config_is_valid_and_bad_values_name_their_key() {
    assert_eq!(WebhooksConfig::default().check(), Ok(()));
    let c = WebhooksConfig {
        retry_for_hours: 0,
        ..WebhooksConfig::default()
    };
    assert_eq!(c.check().unwrap_err().0, "webhooks.retry_for_hours");
}

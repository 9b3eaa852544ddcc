//! Every format read from real files (tests/fixtures/audio/, each 2.5 s of
//! a 440 Hz tone made by FFmpeg: the README there has the commands), and
//! random, cut or damaged bytes read as an error or a real length, never
//! a panic.

use proptest::prelude::*;

use super::*;

/// A recording made by FFmpeg, and how it should read.
#[derive(Clone, Copy)]
struct Fixture {
    name: &'static str,
    bytes: &'static [u8],
    format: Format,
    /// How far from 2.5 s it may read.
    tolerance: f64,
}

macro_rules! fixture {
    ($name:literal, $format:ident, $tolerance:expr) => {
        Fixture {
            name: $name,
            bytes: include_bytes!(concat!("../../tests/fixtures/audio/", $name)),
            format: Format::$format,
            tolerance: $tolerance,
        }
    };
}

/// Each fixture, its format, and how far from 2.5 s it may read: an MP3
/// without a Xing/LAME header is timed by whole frames, with the
/// encoder's delay and padding (2.534 s); FFmpeg's WebM Duration counts
/// Opus's 6.5 ms pre-skip and rounds to the millisecond (2.508 s); the
/// blocks of one without a Duration end at 2.501 s; a fragmented M4A's
/// fragments hold AAC's priming, 64 ms; the others say 2.5 s to the
/// sample.
const FIXTURES: [Fixture; 10] = [
    fixture!("cbr.mp3", Mpeg, 0.05),
    fixture!("vbr-xing.mp3", Mpeg, 0.001),
    fixture!("tone.m4a", Mp4, 0.001),
    fixture!("faststart.m4a", Mp4, 0.001),
    fixture!("fragmented.m4a", Mp4, 0.07),
    fixture!("tone.flac", Flac, 0.001),
    fixture!("opus.ogg", Ogg, 0.001),
    fixture!("vorbis.ogg", Ogg, 0.001),
    fixture!("opus.webm", Matroska, 0.01),
    fixture!("live.webm", Matroska, 0.005),
];

#[test]
fn each_fixture_reads_as_its_true_length() {
    for Fixture {
        name,
        bytes,
        format,
        tolerance,
    } in FIXTURES
    {
        assert_eq!(format_of(bytes), Some(format), "{name}");
        let s = seconds(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!((s - 2.5).abs() <= tolerance, "{name} reads as {s} s");
        assert_eq!(billed_seconds(s), 3, "{name}");
    }
}

#[test]
fn a_fixture_cut_anywhere_reads_no_longer_than_it_is() {
    for Fixture {
        name,
        bytes,
        tolerance,
        ..
    } in FIXTURES
    {
        let cuts = (0..bytes.len()).filter(|&n| n < 300 || n % 7 == 0);
        for n in cuts {
            if let Ok(s) = seconds(&bytes[..n]) {
                // Give or take one frame's padding, which a cut can lose
                // the note of (WebM's DiscardPadding after its block).
                assert!(s <= 2.5 + tolerance + 0.02, "{name} cut at {n}: {s} s");
            }
        }
    }
}

/// Bytes from a fixed seed (xorshift), the same on every run.
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn random_bytes_are_not_a_recording() {
    for seed in 0..20 {
        let b = noise(seed, 256 * 1024);
        assert_eq!(seconds(&b), Err(AudioError::Unknown), "seed {seed}");
        // Behind an ID3 tag, or after an MPEG sync: still no stream.
        let tagged = [b"ID3\x03\0\0\0\0\0\0\xFF\xFB\x90\xC0".as_slice(), &b].concat();
        assert!(
            matches!(
                seconds(&tagged),
                Err(AudioError::Malformed(Format::Mpeg, _))
            ),
            "seed {seed}"
        );
    }
}

#[test]
fn hostile_headers_are_errors() {
    let cases: [&[u8]; 12] = [
        b"",
        b"RIFF",
        b"fLaC",
        b"OggS",
        b"\x1A\x45\xDF\xA3",
        b"\x1A\x45\xDF\xA3\x01\xFF\xFF\xFF\xFF\xFF\xFF\xFF",
        b"\0\0\0\x08ftyp",
        b"\xFF\xFF\xFF\xFFmoov",
        b"\0\0\0\x01ftyp\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF",
        b"\0\0\0\x10moov\0\0\0\x08mvhd",
        b"ID3\x04\0\x10\x7F\x7F\x7F\x7F",
        b"\xFF\xFB\x90\xC0",
    ];
    for b in cases {
        assert!(seconds(b).is_err(), "{b:?}");
    }
}

/// A strategy for damage: bytes overwritten (mostly in the first 512,
/// where the headers are), bytes inserted, and a cut.
fn damaged(original: &'static [u8]) -> impl Strategy<Value = Vec<u8>> {
    let edits = proptest::collection::vec(
        (any::<bool>(), any::<prop::sample::Index>(), any::<u8>()),
        1..12,
    );
    let insert = proptest::option::of((
        any::<prop::sample::Index>(),
        proptest::collection::vec(any::<u8>(), 1..64),
    ));
    let cut = proptest::option::of(any::<prop::sample::Index>());
    (edits, insert, cut).prop_map(move |(edits, insert, cut)| {
        let mut b = original.to_vec();
        for (head, at, x) in edits {
            let span = if head { b.len().min(512) } else { b.len() };
            let at = at.index(span);
            b[at] = x;
        }
        if let Some((at, bytes)) = insert {
            let at = at.index(b.len());
            b.splice(at..at, bytes);
        }
        if let Some(cut) = cut {
            b.truncate(cut.index(b.len()));
        }
        b
    })
}

/// What `seconds` may answer: an error, or a real length.
fn sane(b: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(s) = seconds(b) {
        prop_assert!(s.is_finite() && (0.0..=MAX_SECONDS).contains(&s), "{s}");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..4096)) {
        sane(&b)?;
    }

    #[test]
    fn random_bytes_behind_a_magic_never_panic(
        magic in prop::sample::select(vec![
            b"RIFF\0\0\0\0WAVE".as_slice(), b"fLaC", b"OggS\0", b"\x1A\x45\xDF\xA3",
            b"\0\0\0\x18ftyp", b"ID3\x04\0\0\0\0\0\0", b"\xFF\xFB\x90\xC0",
        ]),
        rest in proptest::collection::vec(any::<u8>(), 0..4096),
    ) {
        sane(&[magic, &rest].concat())?;
    }

    #[test]
    fn damaged_fixtures_never_panic(
        b in prop::sample::select(FIXTURES.map(|f| f.bytes).to_vec()).prop_flat_map(damaged),
    ) {
        sane(&b)?;
    }
}

/// MPEG audio made by hand: frames, tags and headers.
mod mpeg {
    use super::*;

    /// `n` frames of MPEG-1 layer III, 128 kbit/s, 44.1 kHz, mono: 417
    /// bytes and 1,152 samples each.
    fn frames(n: usize) -> Vec<u8> {
        let mut f = vec![0x55; 417];
        f[..4].copy_from_slice(&[0xFF, 0xFB, 0x90, 0xC0]);
        f.repeat(n)
    }

    fn malformed(b: &[u8]) -> bool {
        matches!(seconds(b), Err(AudioError::Malformed(Format::Mpeg, _)))
    }

    #[test]
    fn frames_are_walked_between_the_tags() {
        assert_eq!(seconds(&frames(100)), Ok(100.0 * 1152.0 / 44_100.0));
        // An ID3v2.4 tag of 300 (syncsafe 0x02 0x2C) with a footer, and
        // an ID3v1 tag after the audio.
        let mut b = b"ID3\x04\x00\x10\x00\x00\x02\x2C".to_vec();
        b.resize(10 + 300 + 10, 0);
        b.extend(frames(10));
        b.extend(b"TAG");
        b.resize(b.len() + 125, b'x');
        assert_eq!(seconds(&b), Ok(10.0 * 1152.0 / 44_100.0));
        // Garbage after the frames ends the stream.
        let mut junk = frames(10);
        junk.extend([0xFF; 1000]);
        assert_eq!(seconds(&junk), Ok(10.0 * 1152.0 / 44_100.0));
        // Unless a run of frames follows it, which a decoder would play.
        junk.extend(frames(10));
        let twenty = seconds(&junk).unwrap();
        assert!((twenty - 20.0 * 1152.0 / 44_100.0).abs() < 1e-9, "{twenty}");
    }

    #[test]
    fn a_xing_count_is_used_when_the_file_can_hold_it() {
        let xing = |count: u32| {
            let mut b = frames(11);
            b[21..25].copy_from_slice(b"Xing");
            b[25..29].copy_from_slice(&1u32.to_be_bytes());
            b[29..33].copy_from_slice(&count.to_be_bytes());
            b
        };
        assert_eq!(seconds(&xing(20)), Ok(20.0 * 1152.0 / 44_100.0));
        // 11 frames of 417 bytes hold no more than 45 at 32 kbit/s.
        assert!(malformed(&xing(1000)));
        assert!(malformed(&xing(u32::MAX)));
        // No count: the 10 frames after the header are walked.
        assert_eq!(seconds(&xing(0)), Ok(10.0 * 1152.0 / 44_100.0));
        // A count short of what the bytes hold even at 320 kbit/s (1,045
        // bytes a frame): the frames are walked.
        let mut short = xing(2);
        short.extend(frames(40));
        let fifty = seconds(&short).unwrap();
        assert!((fifty - 50.0 * 1152.0 / 44_100.0).abs() < 1e-9, "{fifty}");
    }

    #[test]
    fn what_is_not_a_run_of_frames_is_refused() {
        // A lone sync among other bytes is not a stream.
        let mut lone = vec![0xFF, 0xFB, 0x90, 0xC0];
        lone.resize(2000, 0x11);
        assert_eq!(seconds(&lone), Err(AudioError::Unknown));
        assert!(malformed(b"ID3"));
        assert!(malformed(b"ID3\x03\x00\x00\x00\x00\x00\x05abc"));
        assert!(malformed(b"ID3\x03\x00\x00\x7F\x7F\x7F\x7F"));
        let mut not_syncsafe = b"ID3\x03\x00\x00\x00\x00\x00\x80".to_vec();
        not_syncsafe.extend(frames(4));
        assert!(malformed(&not_syncsafe));
        // A tag with nothing after it.
        assert!(malformed(b"ID3\x03\x00\x00\x00\x00\x00\x00"));
        // Free-format and reserved headers are not frames.
        let mut free = frames(8);
        for i in 0..8 {
            free[i * 417 + 2] = 0x00;
        }
        assert_eq!(seconds(&free), Err(AudioError::Unknown));
    }
}

//! MPEG audio: MPEG-1, 2 and 2.5, layers I, II and III (MP3, MPGA). After
//! any ID3v2 tag, the first frame's Xing/Info or VBRI header counts the
//! frames (less the encoder's delay and padding that a LAME tag gives),
//! if the file's bytes bear the count out; otherwise the frames are
//! walked, each header giving its length and samples, up to the end or
//! an ID3v1 `TAG` or anything else. Past garbage the walk goes on only
//! where a new run of frames is confirmed: a decoder would play those
//! too, so they are not left unbilled.

use super::{AudioError, Format, be};

fn bad(why: &'static str) -> AudioError {
    AudioError::Malformed(Format::Mpeg, why)
}

/// Frames in a row a sync must begin before it is trusted: two bytes of
/// `FF Ex` turn up by chance every few kilobytes of any data.
const CONFIRM: usize = 4;
/// How far past the ID3 tag the first frame is looked for (some encoders
/// leave padding there).
const SEARCH: usize = 64 * 1024;

/// Kilobits a second by bitrate index (1 to 14), for MPEG-1 layers I, II,
/// III, then MPEG-2/2.5 layer I, then MPEG-2/2.5 layers II and III.
const KBPS: [[u16; 15]; 5] = [
    [
        0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448,
    ],
    [
        0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384,
    ],
    [
        0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
    ],
    [
        0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256,
    ],
    [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
];

/// One frame's header, read.
#[derive(Clone, Copy, Debug)]
struct Frame {
    /// The version, layer and sample-rate bits, which every frame of a
    /// stream shares.
    kind: u32,
    mpeg1: bool,
    mono: bool,
    crc: bool,
    rate: u32,
    samples: u32,
    /// The whole frame's bytes, header included.
    len: usize,
    /// The shortest and longest frames of this kind (lowest bitrate and
    /// no padding, highest and padding).
    min_len: usize,
    max_len: usize,
}

fn frame(b: &[u8], at: usize) -> Option<Frame> {
    let h = be(b, at, 4)? as u32;
    let version = (h >> 19) & 3; // 0: MPEG-2.5, 1: reserved, 2: MPEG-2, 3: MPEG-1
    let layer_bits = (h >> 17) & 3; // 1: III, 2: II, 3: I, 0: reserved
    let bitrate = ((h >> 12) & 15) as usize; // 0: free format, 15: bad
    let rate_bits = ((h >> 10) & 3) as usize; // 3: reserved
    let emphasis = h & 3; // 2: reserved
    if h >> 21 != 0x7FF
        || version == 1
        || layer_bits == 0
        || bitrate == 0
        || bitrate == 15
        || rate_bits == 3
        || emphasis == 2
    {
        return None;
    }
    let mpeg1 = version == 3;
    let layer = 4 - layer_bits;
    let rate = [44_100, 48_000, 32_000][rate_bits] >> [2, 0, 1, 0][version as usize];
    let samples = match (layer, mpeg1) {
        (1, _) => 384,
        (2, _) | (3, true) => 1152,
        _ => 576,
    };
    let table = match (mpeg1, layer) {
        (true, l) => l as usize - 1,
        (false, 1) => 3,
        (false, _) => 4,
    };
    let len = |index: usize, padding: usize| {
        let bps = usize::from(KBPS[table][index]) * 1000;
        if layer == 1 {
            (12 * bps / rate + padding) * 4
        } else {
            samples / 8 * bps / rate + padding
        }
    };
    Some(Frame {
        kind: h & 0x001E_0C00,
        mpeg1,
        mono: (h >> 6) & 3 == 3,
        crc: (h >> 16) & 1 == 0,
        rate: rate as u32,
        samples: samples as u32,
        len: len(bitrate, ((h >> 9) & 1) as usize),
        min_len: len(1, 0),
        max_len: len(14, 1),
    })
}

/// Where a stream ends cleanly: the file's end or an ID3v1/APE tag.
fn at_end(b: &[u8], at: usize) -> bool {
    let rest = b.get(at..).unwrap_or_default();
    rest.is_empty() || rest.starts_with(b"TAG") || rest.starts_with(b"APETAGEX")
}

/// Whether frames of one kind follow each other from `at`: [`CONFIRM`] of
/// them, or fewer that end the file.
fn confirmed(b: &[u8], at: usize) -> bool {
    let Some(first) = frame(b, at) else {
        return false;
    };
    let mut pos = at;
    for n in 0..CONFIRM {
        match frame(b, pos) {
            Some(f) if f.kind == first.kind && pos + f.len <= b.len() => pos += f.len,
            _ => return n > 0 && at_end(b, pos),
        }
    }
    true
}

/// The first trusted frame at or after `from`, within [`SEARCH`] bytes.
pub(super) fn find_stream(b: &[u8], from: usize) -> Option<usize> {
    find_run(b, from, SEARCH)
}

/// The first trusted frame at or after `from`, within `within` bytes.
fn find_run(b: &[u8], from: usize, within: usize) -> Option<usize> {
    let end = b.len().min(from.saturating_add(within));
    (from..end).find(|&at| b[at] == 0xFF && confirmed(b, at))
}

/// Where the ID3v2 tags at the start end (the start itself if there are
/// none): a syncsafe size after a 10-byte header, and a 10-byte footer
/// when version 4's flag says so.
pub(super) fn skip_id3(b: &[u8]) -> Result<usize, AudioError> {
    let mut at = 0;
    // Now and then a file has two; more is not a recording.
    for _ in 0..4 {
        if b.get(at..at + 3) != Some(b"ID3") {
            break;
        }
        let head = b.get(at..at + 10).ok_or(bad("its ID3 tag is cut short"))?;
        let size = &head[6..10];
        if head[3] == 0xFF || head[4] == 0xFF || size.iter().any(|&x| x >= 0x80) {
            return Err(bad("its ID3 tag's header is not valid"));
        }
        let size = size.iter().fold(0usize, |v, &x| (v << 7) | usize::from(x));
        let footer = if head[3] >= 4 && head[5] & 0x10 != 0 {
            10
        } else {
            0
        };
        at += 10 + size + footer;
        if at > b.len() {
            return Err(bad("its ID3 tag is longer than the file"));
        }
    }
    Ok(at)
}

/// What the first frame's info header says.
enum Count {
    /// No such header: the first frame is audio.
    Absent,
    /// A header without a frame count the file bears out: walk the frames
    /// after it, less the encoder's delay at the start, up to the samples
    /// the header counted (when it did).
    Walk { delay: u64, most: u64 },
    /// The stream's samples.
    Samples(u64),
}

fn count(b: &[u8], at: usize, f: &Frame) -> Result<Count, AudioError> {
    let fr = &b[at..at + f.len];
    let side = match (f.mpeg1, f.mono) {
        (true, true) | (false, false) => 17,
        (true, false) => 32,
        (false, true) => 9,
    };
    let crc = if f.crc { 2 } else { 0 };
    let cut = bad("its Xing header is cut short");
    let xing = [4 + side + crc, 4 + side]
        .into_iter()
        .find(|&x| matches!(fr.get(x..x + 4), Some(b"Xing" | b"Info")));
    let (frames, bytes, (delay, padding)) = if let Some(x) = xing {
        let flags = be(fr, x + 4, 4).ok_or(cut.clone())?;
        let frames = if flags & 1 == 0 {
            0
        } else {
            be(fr, x + 8, 4).ok_or(cut)?
        };
        let bytes = (flags & 2 != 0).then(|| be(fr, x + 12, 4)).flatten();
        // After the count: the byte count, a 100-byte seek table and a
        // quality, each there if its flag is.
        let p = [(1, 4), (2, 4), (4, 100), (8, 4)]
            .iter()
            .filter(|(flag, _)| flags & flag != 0)
            .fold(x + 8, |p, (_, n)| p + n);
        // LAME's tag (which FFmpeg writes too) gives the samples the
        // encoder put before and after the audio, 12 bits each.
        let trim = match fr.get(p..p + 4) {
            Some(b"LAME" | b"Lavf" | b"Lavc") => be(fr, p + 21, 3).map(|v| (v >> 12, v & 0xFFF)),
            _ => None,
        };
        (frames, bytes, trim.unwrap_or_default())
    } else if fr.get(36..40) == Some(b"VBRI") {
        let cut = bad("its VBRI header is cut short");
        (be(fr, 50, 4).ok_or(cut)?, be(fr, 46, 4), (0, 0))
    } else {
        return Ok(Count::Absent);
    };
    let total = frames * u64::from(f.samples);
    let total = total.checked_sub(delay + padding).unwrap_or(total);
    let held = b.len() - at;
    if frames == 0 {
        let most = u64::MAX;
        return Ok(Count::Walk { delay, most });
    }
    // A file cut short of the bytes the header counted: walk what is here.
    if bytes.is_some_and(|n| n > held as u64) {
        return Ok(Count::Walk { delay, most: total });
    }
    if frames > (held / f.min_len) as u64 + 1 {
        return Err(bad(
            "its Xing/VBRI header counts more frames than the file can hold",
        ));
    }
    // Fewer frames (and the header's own) than fill the bytes held even
    // at the highest bitrate: the count is short of what a decoder would
    // play, so the frames are walked.
    if (frames + 1) * (f.max_len as u64) < held as u64 {
        return Ok(Count::Walk {
            delay,
            most: u64::MAX,
        });
    }
    Ok(Count::Samples(total))
}

pub(super) fn seconds(b: &[u8]) -> Result<f64, AudioError> {
    let start = skip_id3(b)?;
    let at = find_stream(b, start).ok_or(bad("no run of MPEG audio frames begins it"))?;
    let first = frame(b, at).ok_or(bad("no run of MPEG audio frames begins it"))?;
    let (mut pos, delay, most) = match count(b, at, &first)? {
        Count::Samples(n) => return Ok(n as f64 / f64::from(first.rate)),
        Count::Walk { delay, most } => (at + first.len, delay, most),
        Count::Absent => (at, 0, u64::MAX),
    };
    // Runs of frames, each of one kind; each run after the first begins
    // where a confirmed one is found past what ended the one before.
    let (mut kind, mut seconds) = (first.kind, 0.0);
    loop {
        match frame(b, pos) {
            Some(f) if f.kind == kind && pos + f.len <= b.len() => {
                seconds += f64::from(f.samples) / f64::from(f.rate);
                pos += f.len;
            }
            _ => match find_run(b, pos + 1, usize::MAX).and_then(|at| Some((at, frame(b, at)?))) {
                Some((at, f)) => (pos, kind) = (at, f.kind),
                None => break,
            },
        }
    }
    let rate = f64::from(first.rate);
    Ok((seconds - delay as f64 / rate)
        .max(0.0)
        .min(most as f64 / rate))
}

//! WebM and Matroska (EBML): Segment → Info → Duration (a float, in
//! TimestampScale nanoseconds, by default 1,000,000). A recording without
//! one (a browser's MediaRecorder writes none) is timed by its blocks:
//! from the first block's timestamp to the last's (its cluster's Timecode
//! plus its own relative timecode), plus one block's step, less the
//! track's CodecDelay and the last block's DiscardPadding (Opus's
//! pre-skip and end padding, when the muxer wrote them).
//!
//! The elements are walked in file order, going into Segment, Info,
//! Tracks, Cluster and their groups and over everything else, so an
//! unknown size (live recordings leave Segment's and Cluster's unknown)
//! needs no end.

use super::{AudioError, Format, be};

const EBML: u32 = 0x1A45_DFA3;
const SEGMENT: u32 = 0x1853_8067;
const INFO: u32 = 0x1549_A966;
const TRACKS: u32 = 0x1654_AE6B;
const TRACK_ENTRY: u32 = 0xAE;
const CODEC_DELAY: u32 = 0x56AA;
const DISCARD_PADDING: u32 = 0x75A2;
const CLUSTER: u32 = 0x1F43_B675;
const BLOCK_GROUP: u32 = 0xA0;
const TIMESTAMP_SCALE: u32 = 0x2A_D7B1;
const DURATION: u32 = 0x4489;
const TIMECODE: u32 = 0xE7;
const SIMPLE_BLOCK: u32 = 0xA3;
const BLOCK: u32 = 0xA1;

fn bad(why: &'static str) -> AudioError {
    AudioError::Malformed(Format::Matroska, why)
}

/// An element ID at `at` (1 to 4 bytes, its length marker kept) and its
/// length.
fn id(b: &[u8], at: usize) -> Option<(u32, usize)> {
    let len = b.get(at)?.leading_zeros() as usize + 1;
    if len > 4 {
        return None;
    }
    Some((be(b, at, len)? as u32, len))
}

/// A variable-size integer at `at` (1 to 8 bytes, its marker dropped), and
/// its length; `None` for the value when all its bits are set (an unknown
/// size).
fn vint(b: &[u8], at: usize) -> Option<(Option<u64>, usize)> {
    let len = b.get(at)?.leading_zeros() as usize + 1;
    if len > 8 {
        return None;
    }
    let ones = u64::MAX >> (64 - 7 * len);
    let v = be(b, at, len)? & ones;
    Some(((v != ones).then_some(v), len))
}

/// An unsigned integer element's value (0 to 8 bytes).
fn uint(data: &[u8]) -> Option<u64> {
    (data.len() <= 8).then(|| be(data, 0, data.len()).unwrap_or(0))
}

/// The blocks' timestamps, in TimestampScale units.
#[derive(Default)]
struct Blocks {
    first: Option<i128>,
    last: i128,
    /// The track and timestamp of the block before, and the last step
    /// between two blocks of one track.
    previous: Option<(u64, i128)>,
    step: i128,
    /// The nanoseconds to drop from the end of the block at a timestamp.
    discard: Option<(i128, i128)>,
}

impl Blocks {
    /// A block: its track number (a vint), then its timecode relative to
    /// its cluster's (16 bits, signed).
    fn add(&mut self, data: &[u8], cluster: u64) {
        let Some((Some(track), n)) = vint(data, 0) else {
            return;
        };
        let Some(relative) = be(data, n, 2) else {
            return;
        };
        let ts = i128::from(cluster) + i128::from(relative as u16 as i16);
        if let Some((t, before)) = self.previous {
            if t == track && ts > before {
                self.step = ts - before;
            }
        }
        self.previous = Some((track, ts));
        self.last = self.first.map_or(ts, |_| self.last.max(ts));
        self.first = Some(self.first.map_or(ts, |f| f.min(ts)));
    }
}

pub(super) fn seconds(b: &[u8]) -> Result<f64, AudioError> {
    // The EBML header comes first, and is passed over.
    let cut = bad("its EBML header is cut short");
    let (n, m, size) = match id(b, 0).map(|(id, n)| (id, n, vint(b, n))) {
        Some((EBML, n, Some((size, m)))) => (n, m, size),
        _ => return Err(cut),
    };
    let mut at = size
        .and_then(|s| usize::try_from(s).ok())
        .and_then(|s| (n + m).checked_add(s))
        .filter(|&end| end <= b.len())
        .ok_or(cut)?;
    let mut scale = 1_000_000u64;
    let mut duration = None;
    let mut cluster = None;
    let mut blocks = Blocks::default();
    let mut delay = 0;
    // Each step moves on by at least an ID and a size; it stops where the
    // elements stop making sense (a file cut short, or damaged).
    while at < b.len() {
        let Some((id, id_len)) = id(b, at) else { break };
        let Some((size, size_len)) = vint(b, at + id_len) else {
            break;
        };
        let body = at + id_len + size_len;
        if matches!(
            id,
            SEGMENT | INFO | TRACKS | TRACK_ENTRY | CLUSTER | BLOCK_GROUP
        ) {
            at = body;
            continue;
        }
        let Some(end) = size
            .and_then(|n| usize::try_from(n).ok())
            .and_then(|n| body.checked_add(n))
            .filter(|&end| end <= b.len())
        else {
            break;
        };
        let data = &b[body..end];
        match id {
            TIMESTAMP_SCALE => match uint(data) {
                Some(0) => return Err(bad("its TimestampScale is 0")),
                Some(s) => scale = s,
                None => return Err(bad("its TimestampScale is longer than 8 bytes")),
            },
            DURATION => {
                duration = Some(match data.len() {
                    0 => 0.0,
                    4 => f64::from(f32::from_bits(be(data, 0, 4).unwrap_or(0) as u32)),
                    8 => f64::from_bits(be(data, 0, 8).unwrap_or(0)),
                    _ => return Err(bad("its Duration is not a 4- or 8-byte float")),
                })
            }
            TIMECODE => cluster = uint(data),
            CODEC_DELAY => delay = uint(data).unwrap_or(0),
            DISCARD_PADDING => {
                // A signed integer: the block before it in its group.
                let n = data.len().clamp(1, 8);
                let v = (be(data, 0, n).unwrap_or(0) << (64 - 8 * n)) as i64 >> (64 - 8 * n);
                if let Some((_, ts)) = blocks.previous {
                    blocks.discard = Some((ts, i128::from(v)));
                }
            }
            SIMPLE_BLOCK | BLOCK => {
                if let Some(tc) = cluster {
                    blocks.add(data, tc);
                }
            }
            _ => {}
        }
        at = end;
    }
    let nanos = match (duration, blocks.first) {
        (Some(d), _) if d.is_nan() || d < 0.0 => {
            return Err(bad("its Duration is not a number or negative"));
        }
        (Some(d), _) if d > 0.0 => d * scale as f64,
        (_, Some(first)) => {
            let discard = match blocks.discard {
                Some((ts, n)) if ts == blocks.last => n,
                _ => 0,
            };
            let ticks = blocks.last + blocks.step - first;
            ticks as f64 * scale as f64 - delay as f64 - discard as f64
        }
        _ => {
            return Err(AudioError::Unreadable(
                Format::Matroska,
                "it has no Duration and no blocks to time",
            ));
        }
    };
    Ok(nanos / 1e9)
}

#[cfg(test)]
mod tests {
    use super::super::{AudioError, Format, seconds};
    use super::*;

    /// An element of `id` with `body`, its size as 8 bytes (or unknown).
    fn el(id: u32, body: &[u8], known: bool) -> Vec<u8> {
        let mut e: Vec<u8> = id
            .to_be_bytes()
            .into_iter()
            .skip_while(|&x| x == 0)
            .collect();
        let size = if known {
            body.len() as u64
        } else {
            (1 << 56) - 1
        };
        e.extend(((1u64 << 56) | size).to_be_bytes());
        e.extend(body);
        e
    }

    fn file(segment: &[u8]) -> Vec<u8> {
        let header = el(EBML, &el(0x4282, b"webm", true), true);
        [header, el(SEGMENT, segment, false)].concat()
    }

    fn info(scale: u64, duration: &[u8]) -> Vec<u8> {
        let body = [
            el(TIMESTAMP_SCALE, &scale.to_be_bytes(), true),
            el(DURATION, duration, true),
        ];
        el(INFO, &body.concat(), true)
    }

    /// A cluster at `tc` with audio blocks at `relative` timecodes.
    fn cluster(tc: u16, relative: impl Iterator<Item = i16>) -> Vec<u8> {
        let mut body = el(TIMECODE, &tc.to_be_bytes(), true);
        for r in relative {
            body.extend(el(
                SIMPLE_BLOCK,
                &[[0x81].as_slice(), &r.to_be_bytes(), &[0x80, 9, 9]].concat(),
                true,
            ));
        }
        el(CLUSTER, &body, false)
    }

    fn malformed(b: &[u8]) -> bool {
        matches!(seconds(b), Err(AudioError::Malformed(Format::Matroska, _)))
    }

    #[test]
    fn duration_or_else_the_blocks_give_the_length() {
        assert_eq!(
            seconds(&file(&info(1_000_000, &2500f64.to_be_bytes()))),
            Ok(2.5)
        );
        assert_eq!(seconds(&file(&info(1000, &2e6f32.to_be_bytes()))), Ok(2.0));
        // No Duration: 20 ms blocks from 0 to 2,480 ms in two clusters.
        let live = [
            cluster(0, (0..50).map(|i| i * 20)),
            cluster(1000, (0..75).map(|i| i * 20)),
        ];
        assert_eq!(seconds(&file(&live.concat())), Ok(2.5));
        // Blocks before their cluster's timecode count from the first.
        let early = cluster(0, (0..10).map(|i| i * 20 - 1000));
        assert_eq!(seconds(&file(&early)), Ok(0.2));
    }

    #[test]
    fn a_duration_that_is_not_a_length_is_refused() {
        assert!(malformed(&file(&info(1_000_000, &f64::NAN.to_be_bytes()))));
        assert!(malformed(&file(&info(1_000_000, &(-1f64).to_be_bytes()))));
        assert!(malformed(&file(&info(
            1_000_000,
            &f64::INFINITY.to_be_bytes()
        ))));
        assert!(malformed(&file(&info(1_000_000, &1e300f64.to_be_bytes()))));
        assert!(malformed(&file(&info(u64::MAX, &2500f64.to_be_bytes()))));
        assert!(malformed(&file(&info(0, &2500f64.to_be_bytes()))));
        assert!(malformed(&file(&info(1_000_000, &[1, 2, 3]))));
        assert!(malformed(&file(b"")[..10]));
        assert!(matches!(
            seconds(&file(&el(0xEC, &[0; 40], true))),
            Err(AudioError::Unreadable(Format::Matroska, _))
        ));
    }
}

//! A fragmented MP4 (a browser's MediaRecorder in Safari, FFmpeg's
//! `empty_moov`) may leave `mvhd`'s duration 0 and write no `mehd`: its
//! first track is timed by its fragments. Each `moof` → `traf` of that
//! track gives its samples' durations (per sample in `trun`, or by
//! default in `tfhd` or `moov` → `mvex` → `trex`), from its decode time
//! in `tfdt`, in the track's own timescale (`mdhd`).

use super::{AudioError, Box, bad, be, child, next, versioned};

/// What `moov` says of the first track.
struct Track {
    id: u64,
    timescale: u64,
    /// `trex`'s default sample duration, if it gives one.
    default_duration: u64,
}

fn track(b: &[u8], moov: &Box) -> Result<Option<Track>, AudioError> {
    let Some(trak) = child(b, moov.body, moov.end, b"trak")? else {
        return Ok(None);
    };
    let tkhd = child(b, trak.body, trak.end, b"tkhd")?.ok_or(bad("a `trak` has no `tkhd`"))?;
    // tkhd: version and flags, two times (32 or 64 bits), the track ID.
    let id = match b.get(tkhd.body) {
        Some(0) => be(&b[..tkhd.end], tkhd.body + 12, 4),
        Some(1) => be(&b[..tkhd.end], tkhd.body + 20, 4),
        _ => None,
    }
    .ok_or(bad("`tkhd` is cut short or of an unknown version"))?;
    let mdhd = match child(b, trak.body, trak.end, b"mdia")? {
        Some(mdia) => child(b, mdia.body, mdia.end, b"mdhd")?,
        None => None,
    }
    .ok_or(bad("a `trak` has no `mdia` → `mdhd`"))?;
    // mdhd: as mvhd, the timescale after the two times.
    let timescale = match b.get(mdhd.body) {
        Some(0) => be(&b[..mdhd.end], mdhd.body + 12, 4),
        Some(1) => be(&b[..mdhd.end], mdhd.body + 20, 4),
        _ => None,
    }
    .ok_or(bad("`mdhd` is cut short or of an unknown version"))?;
    if timescale == 0 {
        return Err(bad("`mdhd` has a timescale of 0"));
    }
    // trex: version and flags, the track ID, the default sample
    // description index, then the default sample duration.
    let mut default_duration = 0;
    if let Some(mvex) = child(b, moov.body, moov.end, b"mvex")? {
        let mut at = mvex.body;
        while let Some(x) = next(b, at, mvex.end)? {
            if &x.kind == b"trex" && be(&b[..x.end], x.body + 4, 4) == Some(id) {
                default_duration = be(&b[..x.end], x.body + 12, 4).unwrap_or(0);
            }
            at = x.end;
        }
    }
    Ok(Some(Track {
        id,
        timescale,
        default_duration,
    }))
}

/// The ticks of one `traf`'s runs, and its `tfdt` decode time if it has
/// one; `None` if it is another track's.
fn traf(b: &[u8], traf: &Box, t: &Track) -> Result<Option<(u128, Option<u64>)>, AudioError> {
    let tfhd = child(b, traf.body, traf.end, b"tfhd")?.ok_or(bad("a `traf` has no `tfhd`"))?;
    let tfhd_body = &b[tfhd.body..tfhd.end];
    let cut = bad("`tfhd` is cut short");
    let flags = be(tfhd_body, 0, 4).ok_or(cut.clone())?;
    if be(tfhd_body, 4, 4).ok_or(cut.clone())? != t.id {
        return Ok(None);
    }
    // After the track ID: a base data offset (8 bytes, flag 1), a sample
    // description index (4, flag 2), then the default duration (flag 8).
    let mut default = t.default_duration;
    if flags & 8 != 0 {
        let at = 8 + [0, 8][(flags & 1) as usize] + [0, 4][(flags >> 1 & 1) as usize];
        default = be(tfhd_body, at, 4).ok_or(cut)?;
    }
    let start = match child(b, traf.body, traf.end, b"tfdt")? {
        Some(tfdt) => Some(versioned(b, &tfdt, 4)?),
        None => None,
    };
    let mut ticks = 0u128;
    let mut at = traf.body;
    while let Some(x) = next(b, at, traf.end)? {
        at = x.end;
        if &x.kind != b"trun" {
            continue;
        }
        let run = &b[x.body..x.end];
        let cut = bad("a `trun` is cut short");
        let flags = be(run, 0, 4).ok_or(cut.clone())?;
        let count = be(run, 4, 4).ok_or(cut.clone())?;
        // A data offset (flag 1) and the first sample's flags (flag 4),
        // then per sample: duration, size, flags, composition offset,
        // each there if its flag (0x100 to 0x800) is.
        let first = 8 + [0, 4][(flags & 1) as usize] + [0, 4][(flags >> 2 & 1) as usize];
        let entry = 4 * (flags >> 8 & 0xF).count_ones() as usize;
        if flags & 0x100 == 0 {
            ticks += u128::from(count) * u128::from(default);
            continue;
        }
        // Per-sample durations: only as many as the box holds.
        let held = (run.len().saturating_sub(first) / entry) as u64;
        if count > held {
            return Err(bad("a `trun` counts more samples than it holds"));
        }
        for i in 0..count as usize {
            ticks += u128::from(be(run, first + i * entry, 4).ok_or(cut.clone())?);
        }
    }
    Ok(Some((ticks, start)))
}

/// The first track's length by its fragments, if it has any.
pub(super) fn seconds(b: &[u8], moov: &Box) -> Result<Option<f64>, AudioError> {
    let Some(t) = track(b, moov)? else {
        return Ok(None);
    };
    let (mut first, mut end, mut found) = (None::<u128>, 0u128, false);
    // The top level, to the end or to a box cut short (an upload that
    // lost its tail counts the fragments it has).
    let mut at = 0;
    while let Ok(Some(x)) = next(b, at, b.len()) {
        at = x.end;
        if &x.kind != b"moof" {
            continue;
        }
        let mut inner = x.body;
        while let Some(y) = next(b, inner, x.end)? {
            inner = y.end;
            if &y.kind != b"traf" {
                continue;
            }
            let Some((ticks, start)) = traf(b, &y, &t)? else {
                continue;
            };
            // Without tfdt, a fragment follows the one before.
            let start = start.map_or(end, u128::from);
            first = Some(first.map_or(start, |f| f.min(start)));
            end = end.max(start + ticks);
            found = true;
        }
    }
    Ok(found.then(|| (end - first.unwrap_or(0)) as f64 / t.timescale as f64))
}

#[cfg(test)]
mod tests {
    use super::super::super::{AudioError, Format, seconds};

    fn boxed(kind: &[u8; 4], parts: &[&[u8]]) -> Vec<u8> {
        let body = parts.concat();
        [
            &(8 + body.len() as u32).to_be_bytes(),
            kind.as_slice(),
            &body,
        ]
        .concat()
    }

    fn u32s(v: &[u32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_be_bytes()).collect()
    }

    /// A fragmented file: track 1 at 1000 ticks a second (trex's default
    /// duration 10), then `moofs`.
    fn file(moofs: &[Vec<u8>]) -> Vec<u8> {
        let mvhd = boxed(b"mvhd", &[&u32s(&[0, 0, 0, 1000, 0]), &[0; 80]]);
        let tkhd = boxed(b"tkhd", &[&u32s(&[0, 0, 0, 1, 0]), &[0; 60]]);
        let mdhd = boxed(b"mdhd", &[&u32s(&[0, 0, 0, 1000, 0, 0])]);
        let trak = boxed(b"trak", &[&tkhd, &boxed(b"mdia", &[&mdhd])]);
        let trex = boxed(b"trex", &[&u32s(&[0, 1, 1, 10, 0, 0])]);
        let moov = boxed(b"moov", &[&mvhd, &trak, &boxed(b"mvex", &[&trex])]);
        [boxed(b"ftyp", &[b"iso5\0\0\0\0"]), moov, moofs.concat()].concat()
    }

    /// A fragment of track `id` from `start` (a tfdt, if given) with one
    /// run: per-sample `durations`, or `count` samples of the default.
    fn moof(id: u32, start: Option<u64>, durations: &[u32], count: u32) -> Vec<u8> {
        let tfhd = boxed(b"tfhd", &[&u32s(&[0x02_0000, id])]);
        let tfdt = start.map_or(Vec::new(), |s| {
            boxed(b"tfdt", &[&[1, 0, 0, 0], &s.to_be_bytes()])
        });
        let trun = if durations.is_empty() {
            boxed(b"trun", &[&u32s(&[0x1, count, 0])])
        } else {
            let n = durations.len() as u32;
            boxed(
                b"trun",
                &[
                    &u32s(&[0x301, n, 0]),
                    &u32s(&durations.iter().flat_map(|&d| [d, 7]).collect::<Vec<_>>()),
                ],
            )
        };
        let traf = boxed(b"traf", &[&tfhd, &tfdt, &trun]);
        [
            boxed(b"moof", &[&boxed(b"mfhd", &[&[0; 8]]), &traf]),
            boxed(b"mdat", &[&[0; 20]]),
        ]
        .concat()
    }

    #[test]
    fn fragments_time_a_file_whose_header_says_0() {
        // 100 samples of trex's default 10 ticks, then 5 of 100: 1.5 s.
        let two = [
            moof(1, Some(0), &[], 100),
            moof(1, Some(1000), &[100; 5], 0),
        ];
        assert_eq!(seconds(&file(&two)), Ok(1.5));
        // Without tfdt, fragments follow each other; another track's
        // fragments are not counted.
        let chained = [
            moof(1, None, &[250; 4], 0),
            moof(2, None, &[9999], 0),
            moof(1, None, &[], 50),
        ];
        assert_eq!(seconds(&file(&chained)), Ok(1.5));
        // From the first fragment's decode time (a recording cut from a
        // longer one).
        let late = [moof(1, Some(60_000), &[500, 500], 0)];
        assert_eq!(seconds(&file(&late)), Ok(1.0));
    }

    #[test]
    fn fragments_that_claim_too_much_are_refused() {
        assert!(matches!(
            seconds(&file(&[])),
            Err(AudioError::Unreadable(Format::Mp4, _))
        ));
        // A run that counts a million samples in the room of two.
        let mut lying = moof(1, Some(0), &[10, 10], 0);
        let count = lying.windows(4).position(|w| w == b"trun").unwrap() + 8;
        lying[count..count + 4].copy_from_slice(&1_000_000u32.to_be_bytes());
        assert!(matches!(
            seconds(&file(&[lying])),
            Err(AudioError::Malformed(Format::Mp4, _))
        ));
        // 2^32 - 1 samples of 2^32 - 1 ticks at 1 kHz: far over 24 hours.
        let mut huge = file(&[moof(1, None, &[], u32::MAX)]);
        let trex = huge.windows(4).position(|w| w == b"trex").unwrap();
        huge[trex + 16..trex + 20].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            seconds(&huge),
            Err(AudioError::Malformed(Format::Mp4, _))
        ));
    }
}

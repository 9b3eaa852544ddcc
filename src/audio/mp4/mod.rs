//! MP4, M4A and MOV (ISO base media): the movie header (`moov` → `mvhd`)
//! gives a timescale and a duration in it, wherever `moov` sits. A
//! fragmented file whose `mvhd` says 0 gives its length in `mvex` →
//! `mehd`, or else its fragments do (fragments.rs).

mod fragments;

use super::{AudioError, Format, be};

fn bad(why: &'static str) -> AudioError {
    AudioError::Malformed(Format::Mp4, why)
}

/// One box: its type, where its body starts, where it ends.
struct Box {
    kind: [u8; 4],
    body: usize,
    end: usize,
}

/// The box at `at`, which must end by `end`; `None` at `end`.
fn next(b: &[u8], at: usize, end: usize) -> Result<Option<Box>, AudioError> {
    if at >= end {
        return Ok(None);
    }
    let size = be(b, at, 4).ok_or(bad("a box header is cut short"))?;
    let kind = b
        .get(at + 4..at + 8)
        .and_then(|k| <[u8; 4]>::try_from(k).ok())
        .ok_or(bad("a box header is cut short"))?;
    let (size, head) = match size {
        // A size of 0: to the end of the file (or of what holds it).
        0 => ((end - at) as u64, 8),
        1 => (
            be(b, at + 8, 8).ok_or(bad("a box header is cut short"))?,
            16,
        ),
        n => (n, 8),
    };
    if size < head {
        return Err(bad("a box is smaller than its header"));
    }
    let box_end = usize::try_from(size)
        .ok()
        .and_then(|n| at.checked_add(n))
        .filter(|&e| e <= end)
        .ok_or(bad("a box is larger than what holds it"))?;
    Ok(Some(Box {
        kind,
        body: at + head as usize,
        end: box_end,
    }))
}

/// The first child of `kind` between `from` and `end`.
fn child(b: &[u8], from: usize, end: usize, kind: &[u8; 4]) -> Result<Option<Box>, AudioError> {
    let mut at = from;
    while let Some(x) = next(b, at, end)? {
        if &x.kind == kind {
            return Ok(Some(x));
        }
        at = x.end;
    }
    Ok(None)
}

/// A full box's version, then its 32- or 64-bit field (by version) at
/// `at` bytes past its start.
fn versioned(b: &[u8], x: &Box, at: usize) -> Result<u64, AudioError> {
    let body = &b[x.body..x.end];
    match body.first() {
        Some(0) => be(body, at, 4),
        Some(1) => be(body, at, 8),
        _ => None,
    }
    .ok_or(bad("a header box is cut short or of an unknown version"))
}

pub(super) fn seconds(b: &[u8]) -> Result<f64, AudioError> {
    // The top level: a box cut short by the end of the file (an `mdat`
    // an upload lost the tail of) ends the search.
    let mut at = 0;
    let moov = loop {
        match next(b, at, b.len()) {
            Ok(Some(x)) if &x.kind == b"moov" => break x,
            Ok(Some(x)) => at = x.end,
            Ok(None) => return Err(bad("it has no `moov` box")),
            Err(e) => {
                // `moov` itself larger than the file, or a box too small,
                // is malformed; another box running off the end is a file
                // cut short before its `moov`.
                let claims_moov = b.get(at + 4..at + 8) == Some(b"moov");
                let too_small = be(b, at, 4).is_some_and(|n| (2..8).contains(&n));
                return Err(if claims_moov || too_small {
                    e
                } else {
                    bad("it has no `moov` box (cut short before it?)")
                });
            }
        }
    };
    let mvhd = child(b, moov.body, moov.end, b"mvhd")?.ok_or(bad("`moov` has no `mvhd`"))?;
    // mvhd: version and flags, creation and modification times (32 or 64
    // bits), the timescale (32), the duration (32 or 64).
    let body = &b[mvhd.body..mvhd.end];
    let (timescale, duration, unknown) = match body.first() {
        Some(0) => (be(body, 12, 4), be(body, 16, 4), 0xFFFF_FFFF),
        Some(1) => (be(body, 20, 4), be(body, 24, 8), u64::MAX),
        _ => return Err(bad("`mvhd` is of an unknown version")),
    };
    let cut = bad("`mvhd` is cut short");
    let (timescale, duration) = (timescale.ok_or(cut.clone())?, duration.ok_or(cut)?);
    if timescale == 0 {
        return Err(bad("`mvhd` has a timescale of 0"));
    }
    if duration == unknown {
        return Err(AudioError::Unreadable(
            Format::Mp4,
            "`mvhd` leaves the duration unknown",
        ));
    }
    let duration = if duration > 0 {
        duration
    } else {
        // Fragmented: the fragments' total duration, in the same scale.
        let mehd = match child(b, moov.body, moov.end, b"mvex")? {
            Some(mvex) => child(b, mvex.body, mvex.end, b"mehd")?,
            None => None,
        };
        match mehd {
            Some(mehd) => versioned(b, &mehd, 4)?,
            None => 0,
        }
    };
    if duration > 0 {
        return Ok(duration as f64 / timescale as f64);
    }
    fragments::seconds(b, &moov)?.ok_or(AudioError::Unreadable(
        Format::Mp4,
        "`mvhd` gives a duration of 0, and no `mehd` or fragment gives one",
    ))
}

#[cfg(test)]
mod tests {
    use super::super::{AudioError, Format, seconds};

    fn boxed(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        [
            &(8 + body.len() as u32).to_be_bytes(),
            kind.as_slice(),
            body,
        ]
        .concat()
    }

    /// An mvhd of version 0 or 1 with `scale` and `duration`.
    fn mvhd(version: u8, scale: u32, duration: u64) -> Vec<u8> {
        let mut body = vec![version, 0, 0, 0];
        let times = if version == 0 { 8 } else { 16 };
        body.resize(4 + times, 0);
        body.extend(scale.to_be_bytes());
        if version == 0 {
            body.extend((duration as u32).to_be_bytes());
        } else {
            body.extend(duration.to_be_bytes());
        }
        body.resize(body.len() + 80, 0);
        boxed(b"mvhd", &body)
    }

    fn file(moov: &[u8]) -> Vec<u8> {
        let mut b = boxed(b"ftyp", b"M4A \0\0\0\0isom");
        b.extend(boxed(b"mdat", &[7; 500]));
        b.extend(boxed(b"moov", moov));
        b
    }

    fn malformed(b: &[u8]) -> bool {
        matches!(seconds(b), Err(AudioError::Malformed(Format::Mp4, _)))
    }

    #[test]
    fn mvhd_gives_the_length_in_either_version() {
        assert_eq!(seconds(&file(&mvhd(0, 1000, 2500))), Ok(2.5));
        assert_eq!(seconds(&file(&mvhd(1, 44_100, 88_200))), Ok(2.0));
        // A fragmented file's mvhd says 0; mehd says how long.
        let mehd = boxed(
            b"mehd",
            &[[0, 0, 0, 0].as_slice(), &3000u32.to_be_bytes()].concat(),
        );
        let moov = [mvhd(0, 1000, 0), boxed(b"mvex", &mehd)].concat();
        assert_eq!(seconds(&file(&moov)), Ok(3.0));
        assert!(matches!(
            seconds(&file(&mvhd(0, 1000, 0))),
            Err(AudioError::Unreadable(Format::Mp4, _))
        ));
    }

    #[test]
    fn bad_boxes_are_refused() {
        assert!(malformed(&file(&mvhd(0, 0, 2500))));
        assert!(malformed(&file(&mvhd(2, 1000, 2500))));
        assert!(malformed(&file(b"")));
        // mvhd cut short inside moov.
        assert!(malformed(&file(&mvhd(0, 1000, 2500)[..20])));
        // A moov that claims more than the file holds.
        let mut long = file(&mvhd(0, 1000, 2500));
        let moov = long.len() - 8 - 108;
        long[moov..moov + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(malformed(&long));
        // A box smaller than its header; a 64-bit size past the end.
        let mut tiny = file(&mvhd(0, 1000, 2500));
        tiny[0..4].copy_from_slice(&3u32.to_be_bytes());
        assert!(malformed(&tiny));
        let mut huge = b"\0\0\0\x01ftyp".to_vec();
        huge.extend(u64::MAX.to_be_bytes());
        assert!(malformed(&huge));
        // A movie of 2^32 - 2 ticks at 1 Hz is 136 years.
        assert!(malformed(&file(&mvhd(0, 1, 0xFFFF_FFFE))));
    }
}

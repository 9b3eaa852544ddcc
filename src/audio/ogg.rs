//! Ogg: the pages of the file's first logical stream are walked to the
//! last one that gives a granule position, which counts that stream's
//! samples. Opus: (granule − `OpusHead`'s pre-skip) / 48,000; Vorbis:
//! granule / the identification header's rate; FLAC in Ogg: granule / the
//! rate of the STREAMINFO it carries.

use super::{AudioError, Format, find, flac, le};

fn bad(why: &'static str) -> AudioError {
    AudioError::Malformed(Format::Ogg, why)
}

/// A page's header is 27 bytes and its segment table; `None` if what is at
/// `at` is not a whole page.
struct Page {
    granule: u64,
    serial: u32,
    body: usize,
    end: usize,
}

fn page(b: &[u8], at: usize) -> Option<Page> {
    if b.get(at..at + 4)? != b"OggS" || *b.get(at + 4)? != 0 {
        return None;
    }
    let segments = usize::from(*b.get(at + 26)?);
    let table = b.get(at + 27..at + 27 + segments)?;
    let body = at + 27 + segments;
    let end = body + table.iter().map(|&n| usize::from(n)).sum::<usize>();
    (end <= b.len()).then_some(Page {
        granule: le(b, at + 6, 8)?,
        serial: le(b, at + 14, 4)? as u32,
        body,
        end,
    })
}

/// How the first packet's codec turns a granule into seconds.
enum Codec {
    Opus {
        pre_skip: u64,
    },
    /// Vorbis and FLAC: a granule counts samples at `rate`.
    Rate(u64),
}

fn codec(packet: &[u8]) -> Result<Codec, AudioError> {
    if packet.starts_with(b"OpusHead") {
        // Version, channels, then the pre-skip (16 bits).
        let pre_skip = le(packet, 10, 2).ok_or(bad("its OpusHead is cut short"))?;
        Ok(Codec::Opus { pre_skip })
    } else if packet.starts_with(b"\x01vorbis") {
        // Version (32 bits), channels, then the rate (32 bits).
        let rate = le(packet, 12, 4).ok_or(bad("its Vorbis header is cut short"))?;
        if rate == 0 {
            return Err(bad("its Vorbis header gives a rate of 0"));
        }
        Ok(Codec::Rate(rate))
    } else if packet.starts_with(b"\x7FFLAC") {
        // Mapping version, header count, `fLaC`, a block header, then
        // STREAMINFO.
        let info = packet
            .get(17..17 + 34)
            .ok_or(bad("its FLAC header is cut short"))?;
        match flac::streaminfo(info) {
            Some((rate, _)) if rate > 0 => Ok(Codec::Rate(rate)),
            _ => Err(bad("its FLAC header gives no sample rate")),
        }
    } else {
        Err(AudioError::Unreadable(
            Format::Ogg,
            "its first stream is not Opus, Vorbis or FLAC",
        ))
    }
}

pub(super) fn seconds(b: &[u8]) -> Result<f64, AudioError> {
    let first = page(b, 0).ok_or(bad("its first page is cut short"))?;
    let packet = &b[first.body..first.end];
    let codec = codec(packet)?;
    // Pages of other streams (a chained or multiplexed file) are passed
    // over; a page that is not whole (a file cut short, a damaged page) is
    // passed over to the next capture pattern.
    let mut last = None;
    let mut at = first.end;
    while at < b.len() {
        match page(b, at) {
            Some(p) => {
                // -1: no packet ends on this page.
                if p.serial == first.serial && p.granule != u64::MAX {
                    last = Some(p.granule);
                }
                at = p.end;
            }
            None => match find(b, b"OggS", at + 1) {
                Some(next) => at = next,
                None => break,
            },
        }
    }
    let granule = last.ok_or(AudioError::Unreadable(
        Format::Ogg,
        "no page after its headers gives a granule position",
    ))?;
    if granule > i64::MAX as u64 {
        return Err(bad("its last granule position is negative"));
    }
    match codec {
        Codec::Opus { pre_skip } => {
            let samples = granule
                .checked_sub(pre_skip)
                .ok_or(bad("it ends before its Opus pre-skip"))?;
            Ok(samples as f64 / 48_000.0)
        }
        Codec::Rate(rate) => Ok(granule as f64 / rate as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{AudioError, Format, seconds};

    /// A page of `serial` with one packet of `body` (under 255 bytes).
    fn page(serial: u32, granule: u64, body: &[u8]) -> Vec<u8> {
        let mut p = b"OggS\0\x02".to_vec();
        p.extend(granule.to_le_bytes());
        p.extend(serial.to_le_bytes());
        p.extend([0u8; 8]);
        p.push(1);
        p.push(body.len() as u8);
        p.extend(body);
        p
    }

    fn opus(pre_skip: u16, last: u64) -> Vec<u8> {
        let head = [
            b"OpusHead\x01\x01".as_slice(),
            &pre_skip.to_le_bytes(),
            &48_000u32.to_le_bytes(),
            &[0, 0, 0],
        ]
        .concat();
        [
            page(7, 0, &head),
            page(7, 0, b"OpusTags"),
            page(7, 24_000, &[0x55; 100]),
            page(9, 999_999_999, &[0x55; 100]),
            page(7, last, &[0x55; 100]),
            page(7, u64::MAX, &[0x55; 100]),
        ]
        .concat()
    }

    fn vorbis(rate: u32, last: u64) -> Vec<u8> {
        let head = [
            b"\x01vorbis\0\0\0\0\x01".as_slice(),
            &rate.to_le_bytes(),
            &[0; 13],
        ]
        .concat();
        [page(3, 0, &head), page(3, last, &[0x55; 100])].concat()
    }

    fn malformed(b: &[u8]) -> bool {
        matches!(seconds(b), Err(AudioError::Malformed(Format::Ogg, _)))
    }

    #[test]
    fn the_last_granule_of_the_first_stream_is_the_length() {
        assert_eq!(seconds(&opus(312, 120_312)), Ok(2.5));
        assert_eq!(seconds(&vorbis(8000, 20_000)), Ok(2.5));
        // The last page cut short: the one before it counts.
        let mut cut = opus(312, 120_312);
        cut.extend(&page(7, 240_312, &[0x55; 100])[..50]);
        assert_eq!(seconds(&cut), Ok(2.5));
        // Garbage between pages is passed over.
        let mut junk = opus(312, 0);
        junk.extend([0x4F; 300]);
        junk.extend(page(7, 96_312, &[1; 10]));
        assert_eq!(seconds(&junk), Ok(2.0));
    }

    #[test]
    fn granules_that_give_no_length_are_refused() {
        assert!(malformed(&opus(312, 100)));
        assert!(malformed(&opus(312, u64::MAX - 1)));
        assert!(malformed(&vorbis(0, 20_000)));
        assert!(malformed(b"OggS\0"));
        assert!(malformed(&page(1, 0, b"OpusHead")));
        // At a rate of 1, 10^9 samples are 31 years.
        assert!(malformed(&vorbis(1, 1_000_000_000)));
        assert!(matches!(
            seconds(&page(1, 0, b"\x80theora")),
            Err(AudioError::Unreadable(Format::Ogg, _))
        ));
        assert!(matches!(
            seconds(&vorbis(8000, u64::MAX)[..60]),
            Err(AudioError::Unreadable(Format::Ogg, _))
        ));
    }
}

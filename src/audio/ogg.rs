//! Ogg: the pages are walked, and each link of the file (the streams
//! that begin together; a chained file has several, one after another)
//! is timed by the last granule position of its first Opus, Vorbis or
//! FLAC stream. Opus: (granule − `OpusHead`'s pre-skip) / 48,000; Vorbis:
//! granule / the identification header's rate; FLAC in Ogg: granule / the
//! rate of the STREAMINFO it carries. The links' lengths add up.

use super::{AudioError, Format, find, flac, le};

fn bad(why: &'static str) -> AudioError {
    AudioError::Malformed(Format::Ogg, why)
}

/// A page's header is 27 bytes and its segment table; `None` if what is at
/// `at` is not a whole page.
struct Page {
    /// The first page of its stream.
    bos: bool,
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
        bos: b.get(at + 5)? & 2 != 0,
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

/// The codec a stream's first packet announces; `None` for one that is
/// not timed here (Theora video, say).
fn codec(packet: &[u8]) -> Result<Option<Codec>, AudioError> {
    if packet.starts_with(b"OpusHead") {
        // Version, channels, then the pre-skip (16 bits).
        let pre_skip = le(packet, 10, 2).ok_or(bad("its OpusHead is cut short"))?;
        Ok(Some(Codec::Opus { pre_skip }))
    } else if packet.starts_with(b"\x01vorbis") {
        // Version (32 bits), channels, then the rate (32 bits).
        let rate = le(packet, 12, 4).ok_or(bad("its Vorbis header is cut short"))?;
        if rate == 0 {
            return Err(bad("its Vorbis header gives a rate of 0"));
        }
        Ok(Some(Codec::Rate(rate)))
    } else if packet.starts_with(b"\x7FFLAC") {
        // Mapping version, header count, `fLaC`, a block header, then
        // STREAMINFO.
        let info = packet
            .get(17..17 + 34)
            .ok_or(bad("its FLAC header is cut short"))?;
        match flac::streaminfo(info) {
            Some((rate, _)) if rate > 0 => Ok(Some(Codec::Rate(rate))),
            _ => Err(bad("its FLAC header gives no sample rate")),
        }
    } else {
        Ok(None)
    }
}

/// One link: its timed stream (serial and codec) and the last granule
/// position that stream's pages gave after its headers.
#[derive(Default)]
struct Link {
    timed: Option<(u32, Codec)>,
    last: Option<u64>,
    /// Whether a page other than a first one has come: a first page
    /// after that begins the next link.
    started: bool,
}

impl Link {
    fn seconds(&self) -> Result<Option<f64>, AudioError> {
        let (Some((_, codec)), Some(granule)) = (&self.timed, self.last) else {
            return Ok(None);
        };
        if granule > i64::MAX as u64 {
            return Err(bad("a granule position is negative"));
        }
        Ok(Some(match codec {
            Codec::Opus { pre_skip } => {
                let samples = granule
                    .checked_sub(*pre_skip)
                    .ok_or(bad("it ends before its Opus pre-skip"))?;
                samples as f64 / 48_000.0
            }
            Codec::Rate(rate) => granule as f64 / *rate as f64,
        }))
    }
}

pub(super) fn seconds(b: &[u8]) -> Result<f64, AudioError> {
    page(b, 0).ok_or(bad("its first page is cut short"))?;
    let (mut total, mut timed, mut known) = (0.0, 0, false);
    let mut link = Link::default();
    // A page that is not whole (a file cut short, a damaged page) is
    // passed over to the next capture pattern.
    let mut at = 0;
    while at < b.len() {
        let Some(p) = page(b, at) else {
            match find(b, b"OggS", at + 1) {
                Some(next) => at = next,
                None => break,
            }
            continue;
        };
        at = p.end;
        if p.bos {
            if link.started {
                if let Some(s) = std::mem::take(&mut link).seconds()? {
                    (total, timed) = (total + s, timed + 1);
                }
            }
            if link.timed.is_none() {
                link.timed = codec(&b[p.body..p.end])?.map(|c| (p.serial, c));
                known |= link.timed.is_some();
            }
            continue;
        }
        link.started = true;
        // -1: no packet ends on this page; 0: the headers'.
        let ours = link.timed.as_ref().is_some_and(|(s, _)| *s == p.serial);
        if ours && p.granule != u64::MAX && p.granule != 0 {
            link.last = Some(p.granule);
        }
    }
    if let Some(s) = link.seconds()? {
        (total, timed) = (total + s, timed + 1);
    }
    match (timed, known) {
        (0, false) => Err(AudioError::Unreadable(
            Format::Ogg,
            "none of its streams is Opus, Vorbis or FLAC",
        )),
        (0, true) => Err(AudioError::Unreadable(
            Format::Ogg,
            "no page after its headers gives a granule position",
        )),
        _ => Ok(total),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{AudioError, Format, seconds};

    /// A page of `serial` with one packet of `body` (under 255 bytes).
    fn page(serial: u32, granule: u64, body: &[u8]) -> Vec<u8> {
        let mut p = bos(serial, body);
        p[5] = 0;
        p[6..14].copy_from_slice(&granule.to_le_bytes());
        p
    }

    /// The first page of a stream.
    fn bos(serial: u32, body: &[u8]) -> Vec<u8> {
        let mut p = b"OggS\0\x02".to_vec();
        p.extend(0u64.to_le_bytes());
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
            bos(7, &head),
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
        [bos(3, &head), page(3, last, &[0x55; 100])].concat()
    }

    fn malformed(b: &[u8]) -> bool {
        matches!(seconds(b), Err(AudioError::Malformed(Format::Ogg, _)))
    }

    #[test]
    fn the_last_granule_of_each_link_gives_its_length() {
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
        // A chained file: links of 1 s and 1.5 s, one after the other.
        let chained = [opus(312, 48_312), opus(312, 72_312)].concat();
        assert_eq!(seconds(&chained), Ok(2.5));
        // Video and audio together: the audio is timed.
        let mut both = bos(5, b"\x80theora");
        both.extend(vorbis(8000, 20_000));
        both.extend(page(5, 4_000_000, &[1; 10]));
        assert_eq!(seconds(&both), Ok(2.5));
    }

    #[test]
    fn granules_that_give_no_length_are_refused() {
        assert!(malformed(&opus(312, 100)));
        assert!(malformed(&opus(312, u64::MAX - 1)));
        assert!(malformed(&vorbis(0, 20_000)));
        assert!(malformed(b"OggS\0"));
        assert!(malformed(&bos(1, b"OpusHead")));
        // At a rate of 1, 10^9 samples are 31 years.
        assert!(malformed(&vorbis(1, 1_000_000_000)));
        assert!(matches!(
            seconds(&bos(1, b"\x80theora")),
            Err(AudioError::Unreadable(Format::Ogg, _))
        ));
        assert!(matches!(
            seconds(&vorbis(8000, u64::MAX)[..60]),
            Err(AudioError::Unreadable(Format::Ogg, _))
        ));
    }
}

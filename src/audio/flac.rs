//! FLAC: `fLaC`, then the STREAMINFO block, whose total samples over its
//! sample rate is the length. A total of 0 means the encoder did not know
//! it (a stream written on the fly): unreadable.

use super::{AudioError, Format, be, mpeg};

/// What STREAMINFO's 34 bytes say: the sample rate (20 bits at byte 10)
/// and the total samples (36 bits from the low half of byte 13).
pub(super) fn streaminfo(info: &[u8]) -> Option<(u64, u64)> {
    let rate = be(info, 10, 3)? >> 4;
    let total = be(info, 13, 5)? & 0xF_FFFF_FFFF;
    Some((rate, total))
}

/// The length STREAMINFO gives, as a file of `format` (FLAC, or Ogg for
/// FLAC in Ogg).
pub(super) fn length(info: &[u8], format: Format) -> Result<f64, AudioError> {
    let (rate, total) =
        streaminfo(info).ok_or(AudioError::Malformed(format, "its STREAMINFO is cut short"))?;
    if rate == 0 {
        return Err(AudioError::Malformed(
            format,
            "STREAMINFO gives a sample rate of 0",
        ));
    }
    if total == 0 {
        return Err(AudioError::Unreadable(
            format,
            "STREAMINFO leaves the total samples unknown",
        ));
    }
    Ok(total as f64 / rate as f64)
}

pub(super) fn seconds(b: &[u8]) -> Result<f64, AudioError> {
    let bad = |why| AudioError::Malformed(Format::Flac, why);
    let start = mpeg::skip_id3(b).map_err(|_| bad("its ID3 tag is not valid"))?;
    if b.get(start..start + 4) != Some(b"fLaC") {
        return Err(bad("no `fLaC` after its ID3 tag"));
    }
    // The first metadata block: last-block flag and type (7 bits; 0 is
    // STREAMINFO), then its length (24 bits), which is 34.
    let head = start + 4;
    let kind = b.get(head).ok_or(bad("its first block is cut short"))? & 0x7F;
    let len = be(b, head + 1, 3).ok_or(bad("its first block is cut short"))?;
    if kind != 0 || len < 34 {
        return Err(bad("its first block is not STREAMINFO"));
    }
    let info = b
        .get(head + 4..head + 4 + 34)
        .ok_or(bad("its STREAMINFO is cut short"))?;
    length(info, Format::Flac)
}

#[cfg(test)]
mod tests {
    use super::super::{AudioError, Format, seconds};

    /// `fLaC` and a STREAMINFO of `rate` Hz and `total` samples.
    fn flac(rate: u32, total: u64) -> Vec<u8> {
        let mut b = b"fLaC\x80\x00\x00\x22".to_vec();
        let mut info = [0u8; 34];
        info[0..2].copy_from_slice(&4096u16.to_be_bytes());
        info[2..4].copy_from_slice(&4096u16.to_be_bytes());
        // rate (20 bits), channels - 1 (3), bits - 1 (5), total (36).
        let packed: u64 = (u64::from(rate) << 44) | (15 << 36) | total;
        info[10..18].copy_from_slice(&packed.to_be_bytes());
        b.extend(info);
        b.extend([0u8; 64]);
        b
    }

    #[test]
    fn streaminfo_gives_the_length() {
        assert_eq!(seconds(&flac(8000, 20_000)), Ok(2.5));
        assert_eq!(seconds(&flac(44_100, 0xF_FFFF_FFFF)).ok(), None);
        // After an ID3 tag.
        let tagged = [
            b"ID3\x03\x00\x00\x00\x00\x00\x02\0\0".as_slice(),
            &flac(48_000, 96_000),
        ]
        .concat();
        assert_eq!(seconds(&tagged), Ok(2.0));
    }

    #[test]
    fn a_streaminfo_that_gives_no_length_is_refused() {
        let malformed =
            |b: &[u8]| matches!(seconds(b), Err(AudioError::Malformed(Format::Flac, _)));
        assert!(malformed(&flac(0, 20_000)));
        assert!(malformed(&flac(8000, 20_000)[..20]));
        assert!(malformed(b"fLaC"));
        let mut not_first = flac(8000, 20_000);
        not_first[4] = 0x84;
        assert!(malformed(&not_first));
        assert_eq!(
            seconds(&flac(8000, 0)),
            Err(AudioError::Unreadable(
                Format::Flac,
                "STREAMINFO leaves the total samples unknown"
            ))
        );
    }
}

//! WAV (RIFF/WAVE, any PCM or float layout): the sample data's bytes over
//! the bytes a second takes (`fmt `'s byte rate).

use super::{AudioError, Format, le};

fn bad(why: &'static str) -> AudioError {
    AudioError::Malformed(Format::Wav, why)
}

/// A data chunk that claims more than the file holds (a recorder that
/// never went back to write the size) counts what is there.
pub(super) fn seconds(b: &[u8]) -> Result<f64, AudioError> {
    let mut at = 12;
    let mut byte_rate = None;
    while at + 8 <= b.len() {
        let id = &b[at..at + 4];
        let size = le(b, at + 4, 4).ok_or(bad("a chunk is cut short"))? as usize;
        let body = at + 8;
        match id {
            b"fmt " => {
                let cut = bad("`fmt ` is cut short");
                let channels = le(b, body + 2, 2).ok_or(cut.clone())?;
                let rate = le(b, body + 4, 4).ok_or(cut.clone())?;
                let per_second = le(b, body + 8, 4).ok_or(cut)?;
                if channels == 0 || rate == 0 || per_second == 0 {
                    return Err(bad("`fmt ` says no channels or no rate"));
                }
                byte_rate = Some(per_second);
            }
            b"data" => {
                let rate = byte_rate.ok_or(bad("`data` comes before `fmt `"))?;
                let held = size.min(b.len() - body);
                return Ok(held as f64 / rate as f64);
            }
            _ => {}
        }
        // Chunks are padded to an even length.
        at = body.saturating_add(size).saturating_add(size & 1);
    }
    Err(bad("no `data` chunk"))
}

#[cfg(test)]
mod tests {
    use super::super::{AudioError, Format, billed_seconds, seconds};

    /// A PCM WAV of `samples` frames at `rate` Hz, `channels` of 16 bits.
    pub fn wav(rate: u32, channels: u16, samples: usize) -> Vec<u8> {
        let data = samples * usize::from(channels) * 2;
        let mut b = Vec::new();
        b.extend_from_slice(b"RIFF");
        b.extend_from_slice(&(36 + data as u32).to_le_bytes());
        b.extend_from_slice(b"WAVEfmt ");
        b.extend_from_slice(&16u32.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&channels.to_le_bytes());
        b.extend_from_slice(&rate.to_le_bytes());
        b.extend_from_slice(&(rate * u32::from(channels) * 2).to_le_bytes());
        b.extend_from_slice(&(channels * 2).to_le_bytes());
        b.extend_from_slice(&16u16.to_le_bytes());
        b.extend_from_slice(b"data");
        b.extend_from_slice(&(data as u32).to_le_bytes());
        b.resize(b.len() + data, 0);
        b
    }

    #[test]
    fn a_wav_is_as_long_as_its_samples_say() {
        assert_eq!(seconds(&wav(16_000, 1, 40_000)), Ok(2.5));
        assert_eq!(seconds(&wav(44_100, 2, 44_100)), Ok(1.0));
        assert_eq!(billed_seconds(2.5), 3);
        assert_eq!(billed_seconds(0.0), 1);
        // A data chunk that claims more than is there counts what is.
        let mut cut = wav(8_000, 1, 8_000);
        cut.truncate(cut.len() - 4_000);
        assert_eq!(seconds(&cut), Ok(0.75));
        // An unknown chunk before the data is skipped.
        let mut extra = wav(8_000, 1, 8_000);
        let list = [b"LIST".as_slice(), &3u32.to_le_bytes(), b"abc\0"].concat();
        extra.splice(36..36, list);
        assert_eq!(seconds(&extra), Ok(1.0));
    }

    #[test]
    fn what_is_not_a_readable_wav_is_refused() {
        assert_eq!(seconds(b""), Err(AudioError::Unknown));
        assert_eq!(seconds(b"RIFF\0\0\0\0WAVX"), Err(AudioError::Unknown));
        let mut no_rate = wav(8_000, 1, 10);
        no_rate[24..28].copy_from_slice(&0u32.to_le_bytes());
        no_rate[28..32].copy_from_slice(&0u32.to_le_bytes());
        assert!(matches!(
            seconds(&no_rate),
            Err(AudioError::Malformed(Format::Wav, _))
        ));
        let header_only = &wav(8_000, 1, 10)[..20];
        assert!(matches!(
            seconds(header_only),
            Err(AudioError::Malformed(Format::Wav, _))
        ));
        // A byte rate of 1 makes 200 KB of samples 55 hours.
        let mut slow = wav(8_000, 1, 100_000);
        slow[28..32].copy_from_slice(&1u32.to_le_bytes());
        assert!(matches!(
            seconds(&slow),
            Err(AudioError::Malformed(Format::Wav, _))
        ));
    }
}

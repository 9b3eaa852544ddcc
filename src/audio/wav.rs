//! The length of an uploaded recording, read from the file itself, so that
//! a transcription is quoted and charged by the seconds it really holds.
//! WAV (RIFF, any PCM or float layout) is read; other containers need a
//! decoder to be timed and are refused as unreadable.

/// Why a recording's length cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AudioError {
    #[error("the file is not a WAV recording (RIFF/WAVE); its length cannot be read")]
    NotWav,
    #[error("the WAV file is malformed: {0}")]
    Malformed(&'static str),
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The recording's length in seconds: its sample data's bytes over the
/// bytes a second takes (`fmt `'s byte rate). A data chunk that claims
/// more than the file holds (a recorder that never went back to write the
/// size) counts what is there.
pub fn wav_seconds(b: &[u8]) -> Result<f64, AudioError> {
    if b.get(0..4) != Some(b"RIFF") || b.get(8..12) != Some(b"WAVE") {
        return Err(AudioError::NotWav);
    }
    let mut at = 12;
    let mut byte_rate = None;
    while at + 8 <= b.len() {
        let id = &b[at..at + 4];
        let size = u32_at(b, at + 4).ok_or(AudioError::Malformed("a chunk is cut short"))? as usize;
        let body = at + 8;
        match id {
            b"fmt " => {
                let channels =
                    u16_at(b, body + 2).ok_or(AudioError::Malformed("`fmt ` is cut short"))?;
                let rate =
                    u32_at(b, body + 4).ok_or(AudioError::Malformed("`fmt ` is cut short"))?;
                let per_second =
                    u32_at(b, body + 8).ok_or(AudioError::Malformed("`fmt ` is cut short"))?;
                if channels == 0 || rate == 0 || per_second == 0 {
                    return Err(AudioError::Malformed("`fmt ` says no channels or no rate"));
                }
                byte_rate = Some(per_second);
            }
            b"data" => {
                let rate = byte_rate.ok_or(AudioError::Malformed("`data` comes before `fmt `"))?;
                let held = size.min(b.len() - body);
                return Ok(held as f64 / f64::from(rate));
            }
            _ => {}
        }
        // Chunks are padded to an even length.
        at = body.saturating_add(size).saturating_add(size & 1);
    }
    Err(AudioError::Malformed("no `data` chunk"))
}

/// Whole seconds to charge for `seconds` of audio: started seconds count,
/// and a recording is at least one.
pub fn billed_seconds(seconds: f64) -> u64 {
    (seconds.ceil() as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(wav_seconds(&wav(16_000, 1, 40_000)), Ok(2.5));
        assert_eq!(wav_seconds(&wav(44_100, 2, 44_100)), Ok(1.0));
        assert_eq!(billed_seconds(2.5), 3);
        assert_eq!(billed_seconds(0.0), 1);
        // A data chunk that claims more than is there counts what is.
        let mut cut = wav(8_000, 1, 8_000);
        cut.truncate(cut.len() - 4_000);
        assert_eq!(wav_seconds(&cut), Ok(0.75));
        // An unknown chunk before the data is skipped.
        let mut extra = wav(8_000, 1, 8_000);
        let list = [b"LIST".as_slice(), &3u32.to_le_bytes(), b"abc\0"].concat();
        extra.splice(36..36, list);
        assert_eq!(wav_seconds(&extra), Ok(1.0));
    }

    #[test]
    fn what_is_not_a_readable_wav_is_refused() {
        assert_eq!(wav_seconds(b"ID3\x03 an mp3"), Err(AudioError::NotWav));
        assert_eq!(wav_seconds(b""), Err(AudioError::NotWav));
        let mut no_rate = wav(8_000, 1, 10);
        no_rate[24..28].copy_from_slice(&0u32.to_le_bytes());
        no_rate[28..32].copy_from_slice(&0u32.to_le_bytes());
        assert!(matches!(
            wav_seconds(&no_rate),
            Err(AudioError::Malformed(_))
        ));
        let header_only = &wav(8_000, 1, 10)[..20];
        assert!(matches!(
            wav_seconds(header_only),
            Err(AudioError::Malformed(_))
        ));
    }
}

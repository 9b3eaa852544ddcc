//! The length of an uploaded recording, read from the file itself, so that
//! a transcription is quoted and charged by the seconds it really holds.
//!
//! The format is told by the file's first bytes (never by its name), and
//! the length is read from its container or stream headers, without a
//! decoder: WAV (RIFF), MP3 and the other MPEG audio layers, MP4/M4A (ISO
//! BMFF), FLAC, Ogg (Opus, Vorbis, FLAC) and WebM/Matroska. One file per
//! format beside this one.
//!
//! Every reader walks the file once and allocates nothing: a size a file
//! claims is checked against what it holds before it is followed, each
//! step of a walk moves forward, and a length that is not a real
//! recording's (not a number, negative, endless, over [`MAX_SECONDS`]) is
//! refused as malformed, so a hostile file is billed neither as a year nor
//! as nothing.

mod flac;
mod mp4;
mod mpeg;
mod ogg;
mod wav;
mod webm;

#[cfg(test)]
mod tests;

/// The longest recording OneFlow will time: 24 hours. A file that says it
/// holds more is taken as malformed (hostile or broken), not billed.
pub const MAX_SECONDS: f64 = 24.0 * 3600.0;

/// The container or stream a recording is in, as its first bytes say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Wav,
    /// MPEG-1/2/2.5 audio, layers I to III (MP3, MPGA, MPEG).
    Mpeg,
    /// ISO base media: MP4, M4A, MOV.
    Mp4,
    Flac,
    /// Ogg carrying Opus, Vorbis or FLAC.
    Ogg,
    /// WebM and Matroska.
    Matroska,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Wav => "WAV",
            Format::Mpeg => "MP3 (MPEG audio)",
            Format::Mp4 => "MP4/M4A",
            Format::Flac => "FLAC",
            Format::Ogg => "Ogg",
            Format::Matroska => "WebM/Matroska",
        })
    }
}

/// Why a recording's length cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AudioError {
    #[error(
        "the file is not a recording OneFlow can time (WAV, MP3, MP4/M4A, FLAC, Ogg Opus/Vorbis, WebM); its length cannot be read"
    )]
    Unknown,
    #[error("the {0} file is malformed ({1}); its length cannot be read")]
    Malformed(Format, &'static str),
    /// Well formed, but the file does not say how long it is.
    #[error("the {0} file does not say how long it is ({1}); its length cannot be read")]
    Unreadable(Format, &'static str),
}

/// The format the file's first bytes announce, if OneFlow reads it.
pub fn format_of(b: &[u8]) -> Option<Format> {
    let at = |i: usize, magic: &[u8]| b.get(i..i + magic.len()) == Some(magic);
    if at(0, b"RIFF") && at(8, b"WAVE") {
        Some(Format::Wav)
    } else if at(0, b"fLaC") {
        Some(Format::Flac)
    } else if at(0, b"OggS") {
        Some(Format::Ogg)
    } else if at(0, &[0x1A, 0x45, 0xDF, 0xA3]) {
        Some(Format::Matroska)
    } else if [b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide"]
        .iter()
        .any(|kind| at(4, *kind))
    {
        Some(Format::Mp4)
    } else if at(0, b"ID3") {
        // An ID3v2 tag opens most MP3s, and now and then a FLAC.
        match mpeg::skip_id3(b) {
            Ok(end) if b.get(end..end + 4) == Some(b"fLaC") => Some(Format::Flac),
            _ => Some(Format::Mpeg),
        }
    } else {
        // No magic: MPEG audio has none but its frames' sync, which only
        // counts when a run of frames follows it.
        mpeg::find_stream(b, 0).map(|_| Format::Mpeg)
    }
}

/// The recording's length in seconds, read from its headers.
pub fn seconds(b: &[u8]) -> Result<f64, AudioError> {
    let format = format_of(b).ok_or(AudioError::Unknown)?;
    let s = match format {
        Format::Wav => wav::seconds(b),
        Format::Mpeg => mpeg::seconds(b),
        Format::Mp4 => mp4::seconds(b),
        Format::Flac => flac::seconds(b),
        Format::Ogg => ogg::seconds(b),
        Format::Matroska => webm::seconds(b),
    }?;
    if s.is_finite() && (0.0..=MAX_SECONDS).contains(&s) {
        Ok(s)
    } else {
        Err(AudioError::Malformed(
            format,
            "the length it gives is not a recording's: not a number, negative, or over 24 hours",
        ))
    }
}

/// Whole seconds to charge for `seconds` of audio: started seconds count,
/// and a recording is at least one.
pub fn billed_seconds(seconds: f64) -> u64 {
    (seconds.ceil() as u64).max(1)
}

/// `n` bytes at `at` as a big-endian number (`n` up to 8).
fn be(b: &[u8], at: usize, n: usize) -> Option<u64> {
    let bytes = b.get(at..at.checked_add(n)?)?;
    (n <= 8).then(|| bytes.iter().fold(0, |v, &x| (v << 8) | u64::from(x)))
}

/// `n` bytes at `at` as a little-endian number (`n` up to 8).
fn le(b: &[u8], at: usize, n: usize) -> Option<u64> {
    let bytes = b.get(at..at.checked_add(n)?)?;
    (n <= 8).then(|| bytes.iter().rev().fold(0, |v, &x| (v << 8) | u64::from(x)))
}

/// Where `needle` next occurs in `hay` at or after `from`.
fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

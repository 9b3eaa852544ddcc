//! `multipart/form-data` bodies, as OpenAI takes uploads (transcriptions)
//! and video jobs. The boundary is random, so that no uploaded file can
//! hold it and add fields of its own.

/// A form being written.
pub(crate) struct Form {
    boundary: String,
    body: Vec<u8>,
}

impl Form {
    pub(crate) fn new(capacity: usize) -> Form {
        Form {
            boundary: format!("oneflow-{}", crate::ids::random_hex(16)),
            body: Vec::with_capacity(capacity + 512),
        }
    }

    pub(crate) fn field(&mut self, name: &str, value: &str) {
        self.body.extend_from_slice(
            format!(
                "--{}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n",
                self.boundary
            )
            .as_bytes(),
        );
    }

    /// A file part. The name is ours to write: quotes and line breaks
    /// would break the part's head.
    pub(crate) fn file(&mut self, name: &str, file_name: &str, bytes: &[u8]) {
        let file_name: String = file_name
            .chars()
            .filter(|c| !matches!(c, '"' | '\r' | '\n' | '\\'))
            .collect();
        self.body.extend_from_slice(
            format!(
                "--{}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{file_name}\"\r\nContent-Type: application/octet-stream\r\n\r\n",
                self.boundary
            )
            .as_bytes(),
        );
        self.body.extend_from_slice(bytes);
        self.body.extend_from_slice(b"\r\n");
    }

    /// The finished form on `builder`, with its content type.
    pub(crate) fn send_with(mut self, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        self.body
            .extend_from_slice(format!("--{}--\r\n", self.boundary).as_bytes());
        builder
            .header(
                reqwest::header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={}", self.boundary),
            )
            .body(self.body)
    }
}

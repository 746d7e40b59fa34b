//! `Content-Type` by file extension (the common subset of nginx's and lighttpd's tables).

/// The type served when the extension is unknown (as nginx's `default_type`).
pub const DEFAULT: &str = "application/octet-stream";

/// The media type of a file named `name` (by its extension, case-insensitively).
pub fn content_type(name: &str) -> &'static str {
    let Some((_, ext)) = name.rsplit_once('.') else {
        return DEFAULT;
    };
    let ext = ext.to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" | "shtml" => "text/html",
        "css" => "text/css",
        "txt" => "text/plain",
        "xml" => "text/xml",
        "csv" => "text/csv",
        "md" => "text/markdown",
        "js" | "mjs" => "application/javascript",
        "json" => "application/json",
        "wasm" => "application/wasm",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        "tar" => "application/x-tar",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" | "svgz" => "image/svg+xml",
        "ico" => "image/x-icon",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        _ => DEFAULT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_and_unknown_extensions() {
        assert_eq!(content_type("index.html"), "text/html");
        assert_eq!(content_type("A.PNG"), "image/png");
        assert_eq!(content_type("dir.v2/archive.tar"), "application/x-tar");
        assert_eq!(content_type("README"), DEFAULT);
        assert_eq!(content_type("x.unknown"), DEFAULT);
    }
}

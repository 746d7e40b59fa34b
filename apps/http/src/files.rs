//! The files served: a directory tree read into memory once, at start, within a bound, plus
//! the built-in `/hello` of a configurable size. Read-only afterwards and shared by every
//! core (`&Files`).

use std::path::{Path, PathBuf};

use hashbrown::{HashMap, HashSet};

use crate::date;

/// One file, ready to serve.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The bytes.
    pub body: Vec<u8>,
    /// Its media type.
    pub content_type: &'static str,
    /// Modification time, whole seconds since the epoch.
    pub modified: date::UnixSecs,
    /// `modified` as an IMF-fixdate.
    pub last_modified: [u8; date::DATE_LEN],
}

impl Entry {
    /// A file of `body` named `name` (for its type), modified at `modified`.
    pub fn new(name: &str, body: Vec<u8>, modified: date::UnixSecs) -> Self {
        Self {
            body,
            content_type: crate::mime::content_type(name),
            modified,
            last_modified: date::format(modified),
        }
    }
}

/// What a request path names.
#[derive(Debug, Clone, Copy)]
pub enum Lookup<'a> {
    /// A file.
    File(&'a Entry),
    /// A directory named without its trailing slash: redirect to `path/`.
    Directory,
    /// A directory with no `index.html`: listing is not offered.
    NoIndex,
    /// Nothing.
    Missing,
}

/// Why the files could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Reading the tree failed.
    #[error("{path}: {error}")]
    Io {
        /// Where.
        path: PathBuf,
        /// What.
        error: std::io::Error,
    },
    /// The tree is larger than the bound.
    #[error(
        "{root}: more than {limit} bytes of files (raise --max-bytes, or serve a smaller tree)"
    )]
    TooLarge {
        /// The root.
        root: PathBuf,
        /// The bound.
        limit: u64,
    },
    /// The tree has more files than the bound.
    #[error("{root}: more than {limit} files (raise --max-files)")]
    TooMany {
        /// The root.
        root: PathBuf,
        /// The bound.
        limit: usize,
    },
    /// A file name is not UTF-8 (it could not be named in a URL the same way by every
    /// client).
    #[error("{0}: file name is not UTF-8")]
    Name(PathBuf),
}

/// The bounds on what is loaded.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Total bytes of all files.
    pub max_bytes: u64,
    /// Number of files.
    pub max_files: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: 1 << 30,
            max_files: 100_000,
        }
    }
}

/// The served tree. Keys are URL paths (`/a/b.txt`), directories are kept apart (`/a`).
#[derive(Debug, Default)]
pub struct Files {
    files: HashMap<String, Entry>,
    dirs: HashSet<String>,
    bytes: u64,
}

/// Byte `i` of the built-in `/hello` body (and of the benchmark's files): printable and
/// position-dependent, so that a misplaced byte is seen.
pub fn hello_byte(i: usize) -> u8 {
    b'a' + ((i % 26) as u8 ^ (i / 26 % 7) as u8) % 26
}

/// The built-in `/hello` body of `size` bytes.
pub fn hello_body(size: usize) -> Vec<u8> {
    (0..size).map(hello_byte).collect()
}

impl Files {
    /// Nothing to serve.
    pub fn empty() -> Self {
        let mut f = Self::default();
        f.dirs.insert(String::new());
        f
    }

    /// Reads every regular file under `root` (following symbolic links) into memory.
    pub fn load(root: &Path, limits: Limits) -> Result<Self, LoadError> {
        let mut f = Self::empty();
        let mut stack = vec![(root.to_path_buf(), String::new())];
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |error| LoadError::Io { path, error }
        };
        while let Some((dir, url)) = stack.pop() {
            for item in std::fs::read_dir(&dir).map_err(io(&dir))? {
                let item = item.map_err(io(&dir))?;
                let path = item.path();
                let name = item
                    .file_name()
                    .into_string()
                    .map_err(|_| LoadError::Name(path.clone()))?;
                let meta = std::fs::metadata(&path).map_err(io(&path))?;
                let child = format!("{url}/{name}");
                if meta.is_dir() {
                    f.dirs.insert(child.clone());
                    stack.push((path, child));
                } else if meta.is_file() {
                    if f.files.len() >= limits.max_files {
                        return Err(LoadError::TooMany {
                            root: root.to_path_buf(),
                            limit: limits.max_files,
                        });
                    }
                    f.bytes += meta.len();
                    if f.bytes > limits.max_bytes {
                        return Err(LoadError::TooLarge {
                            root: root.to_path_buf(),
                            limit: limits.max_bytes,
                        });
                    }
                    let body = std::fs::read(&path).map_err(io(&path))?;
                    let modified = meta
                        .modified()
                        .ok()
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map_or(0, |d| d.as_secs());
                    f.files.insert(child, Entry::new(&name, body, modified));
                }
            }
        }
        Ok(f)
    }

    /// Adds (or replaces) the file at URL path `path` (starting with `/`).
    pub fn insert(&mut self, path: &str, entry: Entry) {
        self.bytes += entry.body.len() as u64;
        self.files.insert(path.to_string(), entry);
    }

    /// Adds the built-in `/hello` of `size` bytes (`text/plain`), modified at `modified`.
    pub fn add_hello(&mut self, size: usize, modified: date::UnixSecs) {
        let mut e = Entry::new("hello.txt", hello_body(size), modified);
        e.content_type = "text/plain";
        self.insert("/hello", e);
    }

    /// Number of files.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether there is no file.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Total bytes of all files.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// What the decoded, normalised URL path `path` (starting with `/`) names. A path
    /// ending in `/` names a directory's `index.html`.
    pub fn lookup(&self, path: &str) -> Lookup<'_> {
        if let Some(dir) = path.strip_suffix('/') {
            if !self.dirs.contains(dir) {
                return Lookup::Missing;
            }
            return match self.files.get(&format!("{dir}/index.html")) {
                Some(e) => Lookup::File(e),
                None => Lookup::NoIndex,
            };
        }
        if let Some(e) = self.files.get(path) {
            Lookup::File(e)
        } else if self.dirs.contains(path) {
            Lookup::Directory
        } else {
            Lookup::Missing
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> PathBuf {
        let d = std::env::temp_dir().join(format!("megatcp-http-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("sub/deeper")).unwrap();
        std::fs::write(d.join("index.html"), b"<p>hi</p>").unwrap();
        std::fs::write(d.join("sub/a.txt"), b"aaa").unwrap();
        std::fs::write(d.join("sub/deeper/b.bin"), vec![7u8; 1000]).unwrap();
        d
    }

    #[test]
    #[allow(clippy::unwrap_used)]
    fn loads_a_tree_and_looks_paths_up() {
        let d = tree();
        let f = Files::load(&d, Limits::default()).unwrap();
        assert_eq!(f.len(), 3);
        assert_eq!(f.bytes(), 9 + 3 + 1000);
        assert!(matches!(f.lookup("/"), Lookup::File(e) if e.body == b"<p>hi</p>"));
        assert!(
            matches!(f.lookup("/sub/a.txt"), Lookup::File(e) if e.content_type == "text/plain")
        );
        assert!(matches!(f.lookup("/sub"), Lookup::Directory));
        assert!(matches!(f.lookup("/sub/"), Lookup::NoIndex));
        assert!(matches!(f.lookup("/nope"), Lookup::Missing));
        assert!(matches!(f.lookup("/nope/"), Lookup::Missing));
        let too_small = Limits {
            max_bytes: 500,
            ..Limits::default()
        };
        assert!(matches!(
            Files::load(&d, too_small),
            Err(LoadError::TooLarge { .. })
        ));
        let few = Limits {
            max_files: 2,
            ..Limits::default()
        };
        assert!(matches!(
            Files::load(&d, few),
            Err(LoadError::TooMany { .. })
        ));
        assert!(matches!(
            Files::load(&d.join("missing"), Limits::default()),
            Err(LoadError::Io { .. })
        ));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn hello_has_the_size_asked_for() {
        let mut f = Files::empty();
        f.add_hello(100, 0);
        assert!(
            matches!(f.lookup("/hello"), Lookup::File(e) if e.body.len() == 100 && e.body == hello_body(100))
        );
    }
}

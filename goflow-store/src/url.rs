//! Database URLs: which backend, where, and how to show them without the
//! password.

use std::fmt;

use crate::{Result, StoreError};

/// The database a [`Store`](crate::Store) talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// SQLite, embedded (a file, or memory).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl Backend {
    /// The backend's name: `sqlite` or `postgres`.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where to connect, as parsed from a URL.
#[derive(Clone, Debug)]
pub(crate) enum Target {
    /// A SQLite file path, or `:memory:`.
    #[cfg(feature = "sqlite")]
    Sqlite {
        /// The file path (or `:memory:`) as given.
        path: String,
        /// An in-memory database lives in one connection.
        memory: bool,
        /// Opened read-only: never written, its journal mode left alone.
        read_only: Option<ReadOnly>,
    },
    /// A libpq connection URL.
    #[cfg(feature = "postgres")]
    Postgres {
        /// The URL handed to libpq.
        url: String,
    },
}

/// How a SQLite file is opened read-only.
#[cfg(feature = "sqlite")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReadOnly {
    /// `mode=ro`: SQLite reads, and still shares the file with writers.
    Shared,
    /// `mode=ro&immutable=1`: SQLite also assumes nobody writes the file,
    /// which lets it read a WAL database in a directory where it cannot
    /// create the `-shm` file (a read-only copy, a read-only mount).
    Immutable,
}

impl Target {
    /// The same database, opened read-only; `immutable` asks for
    /// [`ReadOnly::Immutable`] (SQLite files only: PostgreSQL sessions are
    /// made read-only when set up).
    #[cfg_attr(not(feature = "sqlite"), allow(unused_variables))]
    pub(crate) fn read_only(&self, immutable: bool) -> Target {
        match self {
            #[cfg(feature = "sqlite")]
            Target::Sqlite { path, memory, .. } => Target::Sqlite {
                path: path.clone(),
                memory: *memory,
                read_only: (!*memory).then_some(if immutable {
                    ReadOnly::Immutable
                } else {
                    ReadOnly::Shared
                }),
            },
            #[cfg(feature = "postgres")]
            Target::Postgres { url } => Target::Postgres { url: url.clone() },
        }
    }

    /// The SQLite file, unless the database is PostgreSQL or in memory.
    pub(crate) fn sqlite_file(&self) -> Option<&std::path::Path> {
        match self {
            #[cfg(feature = "sqlite")]
            Target::Sqlite {
                path,
                memory: false,
                ..
            } => Some(std::path::Path::new(path)),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// What `sqlite3_open` gets: the path, or for a read-only database a
    /// `file:` URI saying so.
    #[cfg(feature = "sqlite")]
    pub(crate) fn sqlite_open_name(path: &str, read_only: Option<ReadOnly>) -> String {
        let Some(how) = read_only else {
            return path.to_owned();
        };
        let params = match how {
            ReadOnly::Shared => "mode=ro",
            ReadOnly::Immutable => "mode=ro&immutable=1",
        };
        if path.starts_with("file:") {
            // Already a URI: add to its parameters.
            let sep = if path.contains('?') { '&' } else { '?' };
            return format!("{path}{sep}{params}");
        }
        let mut uri = String::from("file:");
        for c in path.chars() {
            match c {
                '%' => uri.push_str("%25"),
                '?' => uri.push_str("%3f"),
                '#' => uri.push_str("%23"),
                c => uri.push(c),
            }
        }
        format!("{uri}?{params}")
    }
}

/// A parsed URL and its printable form.
#[derive(Clone, Debug)]
pub(crate) struct DbUrl {
    pub target: Target,
    /// The URL with its password replaced by `***`.
    pub display: String,
}

/// Seconds libpq waits for a server that does not answer, unless the URL
/// says otherwise.
const PG_CONNECT_TIMEOUT_SECS: u32 = 10;

/// Parses `postgres://...`, `postgresql://...`, `sqlite://path`,
/// `sqlite::memory:` or a bare file path.
pub(crate) fn parse(url: &str) -> Result<DbUrl> {
    let trimmed = url.trim();
    let display = redact(trimmed);
    if trimmed.is_empty() {
        return Err(StoreError::InvalidUrl {
            url: display,
            reason: "empty; expected postgres://..., sqlite://PATH, sqlite::memory: or a file path"
                .into(),
        });
    }
    let target = if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
        postgres_target(trimmed, &display)?
    } else if let Some(rest) = trimmed.strip_prefix("sqlite:") {
        let path = rest.strip_prefix("//").unwrap_or(rest);
        sqlite_target(path, &display)?
    } else if trimmed.contains("://") {
        return Err(StoreError::InvalidUrl {
            url: display,
            reason:
                "unsupported scheme; expected postgres://, postgresql://, sqlite:// or a file path"
                    .into(),
        });
    } else {
        sqlite_target(trimmed, &display)?
    };
    Ok(DbUrl { target, display })
}

#[cfg(feature = "postgres")]
fn postgres_target(url: &str, _display: &str) -> Result<Target> {
    let mut url = url.to_owned();
    if !url.contains("connect_timeout=") {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&format!("connect_timeout={PG_CONNECT_TIMEOUT_SECS}"));
    }
    Ok(Target::Postgres { url })
}

#[cfg(not(feature = "postgres"))]
fn postgres_target(_url: &str, display: &str) -> Result<Target> {
    let _ = PG_CONNECT_TIMEOUT_SECS;
    Err(StoreError::BackendNotCompiled {
        url: display.to_owned(),
        feature: "postgres",
    })
}

#[cfg(feature = "sqlite")]
fn sqlite_target(path: &str, display: &str) -> Result<Target> {
    if path.is_empty() {
        return Err(StoreError::InvalidUrl {
            url: display.to_owned(),
            reason: "no SQLite file path; expected sqlite://PATH or sqlite::memory:".into(),
        });
    }
    let memory = matches!(path, ":memory:" | ":memory");
    Ok(Target::Sqlite {
        path: if memory {
            ":memory:".to_owned()
        } else {
            path.to_owned()
        },
        memory,
        read_only: None,
    })
}

#[cfg(not(feature = "sqlite"))]
fn sqlite_target(_path: &str, display: &str) -> Result<Target> {
    Err(StoreError::BackendNotCompiled {
        url: display.to_owned(),
        feature: "sqlite",
    })
}

/// `url` with the password (in the authority or a `password=` parameter)
/// replaced by `***`.
pub(crate) fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest_start = scheme_end + 3;
    let rest = &url[rest_start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let mut out = url[..rest_start].to_owned();
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            match userinfo.find(':') {
                Some(colon) => {
                    out.push_str(&userinfo[..colon]);
                    out.push_str(":***");
                }
                None => out.push_str(userinfo),
            }
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    let tail = &rest[authority_end..];
    match tail.split_once('?') {
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => p.to_owned(),
                })
                .collect();
            out.push_str(&params.join("&"));
        }
        None => out.push_str(tail),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://alice:s3cr%40t@db.example:5432/goflow?sslmode=require"),
            "postgres://alice:***@db.example:5432/goflow?sslmode=require"
        );
        assert_eq!(
            redact("postgresql://db/goflow?user=bob&password=hunter2"),
            "postgresql://db/goflow?user=bob&password=***"
        );
        assert_eq!(
            redact("postgres://bob@db/goflow"),
            "postgres://bob@db/goflow"
        );
        assert_eq!(redact("/var/lib/goflow.db"), "/var/lib/goflow.db");
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn sqlite_forms() {
        let path = |u: &str| match parse(u).unwrap().target {
            Target::Sqlite { path, memory, .. } => (path, memory),
            #[allow(unreachable_patterns)]
            _ => unreachable!("not sqlite"),
        };
        assert_eq!(path("sqlite::memory:"), (":memory:".into(), true));
        assert_eq!(path("sqlite://:memory:"), (":memory:".into(), true));
        assert_eq!(path("sqlite://goflow.db"), ("goflow.db".into(), false));
        assert_eq!(
            path("sqlite:///var/lib/goflow.db"),
            ("/var/lib/goflow.db".into(), false)
        );
        assert_eq!(path("./data/goflow.db"), ("./data/goflow.db".into(), false));
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn read_only_sqlite_files_are_opened_by_uri() {
        let name = |p: &str, how| Target::sqlite_open_name(p, how);
        assert_eq!(name("/var/goflow.db", None), "/var/goflow.db");
        assert_eq!(
            name("/var/goflow.db", Some(ReadOnly::Shared)),
            "file:/var/goflow.db?mode=ro"
        );
        assert_eq!(
            name("data/a?b#c%d.db", Some(ReadOnly::Immutable)),
            "file:data/a%3fb%23c%25d.db?mode=ro&immutable=1"
        );
        assert_eq!(
            name("file:x.db?cache=shared", Some(ReadOnly::Shared)),
            "file:x.db?cache=shared&mode=ro"
        );
        let memory = parse("sqlite::memory:").unwrap().target.read_only(true);
        assert!(matches!(
            memory,
            Target::Sqlite {
                read_only: None,
                ..
            }
        ));
        assert!(memory.sqlite_file().is_none());
        let file = parse("sqlite://goflow.db").unwrap().target.read_only(false);
        assert!(matches!(
            file,
            Target::Sqlite {
                read_only: Some(ReadOnly::Shared),
                ..
            }
        ));
        assert_eq!(file.sqlite_file(), Some(std::path::Path::new("goflow.db")));
    }

    #[test]
    fn unknown_schemes_and_empty_urls_are_refused() {
        let err = parse("mysql://root:pw@localhost/goflow")
            .unwrap_err()
            .to_string();
        assert!(err.contains("mysql://root:***@localhost/goflow"), "{err}");
        assert!(err.contains("unsupported scheme"), "{err}");
        assert!(parse("  ").is_err());
        assert!(parse("sqlite://").is_err());
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn postgres_gets_a_connect_timeout() {
        let Target::Postgres { url } = parse("postgres://u@h/db").unwrap().target else {
            unreachable!("not postgres")
        };
        assert_eq!(url, "postgres://u@h/db?connect_timeout=10");
        let Target::Postgres { url } = parse("postgresql://u@h/db?connect_timeout=3")
            .unwrap()
            .target
        else {
            unreachable!("not postgres")
        };
        assert_eq!(url, "postgresql://u@h/db?connect_timeout=3");
    }
}

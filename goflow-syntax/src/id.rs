//! The naming rules of DAG ids, namespaces and task ids.
//!
//! DAG ids and namespaces end up in Kubernetes object names, so they must be
//! DNS-1123 labels. Task ids end up in label values, so they are limited to
//! what a label value accepts.

/// The longest DNS-1123 label (and Kubernetes label value).
pub const MAX_LABEL_LEN: usize = 63;

/// Checks that `s` is a DNS-1123 label: 1 to 63 characters of lowercase
/// letters, digits and `-`, starting and ending with a letter or digit.
///
/// Returns a sentence saying what is wrong, for error messages.
pub fn check_dns1123_label(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > MAX_LABEL_LEN {
        return Err(format!(
            "is {} characters long; at most {MAX_LABEL_LEN} are allowed",
            s.len()
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "contains {c:?}; only lowercase letters, digits and '-' are allowed"
        ));
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err("must start and end with a lowercase letter or digit".into());
    }
    Ok(())
}

/// Checks that `s` can be a task id: 1 to 63 characters of ASCII letters,
/// digits, `_`, `-` and `.`, starting and ending with a letter or digit (a
/// valid Kubernetes label value).
pub fn check_task_id(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > MAX_LABEL_LEN {
        return Err(format!(
            "is {} characters long; at most {MAX_LABEL_LEN} are allowed",
            s.len()
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(format!(
            "contains {c:?}; only letters, digits, '_', '-' and '.' are allowed"
        ));
    }
    let first = s.chars().next().unwrap_or('a');
    let last = s.chars().last().unwrap_or('a');
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return Err("must start and end with a letter or digit".into());
    }
    Ok(())
}

/// The id a DAG function named `fn_name` gets when none is given: the name
/// with `_` replaced by `-`, so that `fn daily_sales` becomes `daily-sales`.
pub fn dag_id_from_fn_name(fn_name: &str) -> String {
    fn_name.trim_start_matches("r#").replace('_', "-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        assert!(check_dns1123_label("daily-sales").is_ok());
        assert!(check_dns1123_label("x1-2y").is_ok());
        let err = check_dns1123_label("Daily").unwrap_err();
        assert!(err.contains("'D'"), "{err}");
        assert!(check_dns1123_label("daily_sales").is_err());
        assert!(check_dns1123_label("-a").is_err());
        assert!(check_dns1123_label("").is_err());
        assert!(check_dns1123_label(&"a".repeat(64)).is_err());
        assert!(check_dns1123_label(&"a".repeat(63)).is_ok());
    }

    #[test]
    fn task_ids() {
        assert!(check_task_id("load_csv").is_ok());
        assert!(check_task_id("stats.north-1").is_ok());
        assert!(check_task_id("_x").is_err());
        assert!(check_task_id("a b").is_err());
    }

    #[test]
    fn dag_id_from_fn() {
        assert_eq!(dag_id_from_fn_name("daily_sales"), "daily-sales");
        assert_eq!(dag_id_from_fn_name("r#type"), "type");
    }
}

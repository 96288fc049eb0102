//! Time-zone names: the IANA names of the tz database goflow-core uses
//! (chrono-tz's), as a list, so that a name can be checked without the
//! database itself.

use crate::tz_names::TZ_NAMES;
use crate::Error;

/// Every name [`check`] accepts, sorted: the IANA names of chrono-tz's
/// `TZ_VARIANTS` (goflow-core's tests check the two are equal).
pub fn names() -> &'static [&'static str] {
    &TZ_NAMES
}

/// Checks a time zone name such as `Europe/Paris` or `UTC` (exact case).
pub fn check(name: &str) -> Result<(), Error> {
    match TZ_NAMES.binary_search(&name) {
        Ok(_) => Ok(()),
        Err(_) => Err(Error::InvalidTimeZone {
            tz: name.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sorted_and_known_ones_pass() {
        assert!(TZ_NAMES.windows(2).all(|w| w[0] < w[1]));
        for ok in [
            "UTC",
            "Europe/Paris",
            "America/Argentina/Buenos_Aires",
            "Etc/GMT+5",
        ] {
            assert!(check(ok).is_ok(), "{ok}");
        }
        let err = check("Europe/Pariss").unwrap_err().to_string();
        assert_eq!(
            err,
            "unknown time zone \"Europe/Pariss\": expected an IANA name such as \"Europe/Paris\" or \"UTC\""
        );
        assert!(check("europe/paris").is_err());
    }
}

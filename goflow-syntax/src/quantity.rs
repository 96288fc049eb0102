//! Kubernetes resource quantities such as `500m`, `2`, `512Mi` or `1G`.

/// Checks a Kubernetes resource quantity such as `500m`, `2`, `1.5`,
/// `512Mi` or `1G`. Returns a sentence saying what is wrong.
pub fn check_quantity(q: &str) -> Result<(), String> {
    quantity_millis(q).map(|_| ())
}

/// The value of a Kubernetes resource quantity in thousandths, rounded up
/// as Kubernetes rounds: `500m` CPU is 500 millicores, `1.5` is 1500, and
/// `1Ki` of memory is 1,024,000 (divide by 1000 for bytes). Accepts the
/// binary (`Ki`…`Ei`), decimal (`n`…`E`) and exponent (`1e3`) forms the
/// API server may return.
pub fn quantity_millis(q: &str) -> Result<u128, String> {
    let invalid = || {
        format!(
            "{q:?} is not a Kubernetes quantity; expected a number with an optional unit, \
             such as 500m, 2, 512Mi or 1Gi"
        )
    };
    let number_end = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(number_end);
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
        return Err(invalid());
    }
    // value = mantissa / 10^frac_digits * 2^binary * 10^decimal
    let (binary, decimal): (u32, i32) = match suffix {
        "" => (0, 0),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        exp => match exp.strip_prefix(['e', 'E']).map(str::parse::<i32>) {
            Some(Ok(e)) if (-30..=30).contains(&e) => (0, e),
            _ => return Err(invalid()),
        },
    };
    let too_large = || format!("{q:?} is too large for a Kubernetes quantity");
    let mantissa: u128 = format!("{int}{frac}").parse().map_err(|_| too_large())?;
    let frac_digits = i32::try_from(frac.len()).map_err(|_| too_large())?;
    // Thousandths: three more decimal places.
    let exponent = decimal + 3 - frac_digits;
    let pow10 = |e: i32| 10u128.checked_pow(e.unsigned_abs());
    let numerator = mantissa
        .checked_mul(1u128 << binary)
        .and_then(|n| {
            if exponent > 0 {
                pow10(exponent).and_then(|p| n.checked_mul(p))
            } else {
                Some(n)
            }
        })
        .ok_or_else(too_large)?;
    if exponent >= 0 {
        return Ok(numerator);
    }
    Ok(match pow10(exponent) {
        Some(denominator) => numerator.div_ceil(denominator),
        // Smaller than any representable fraction: rounds up to one
        // thousandth unless it is zero.
        None => u128::from(numerator > 0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        for ok in ["500m", "2", "1.5", "512Mi", "1Gi", "100k"] {
            assert!(check_quantity(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Mi", "1.2.3", "512MB", "-1", "lots", ".", "1e", "1e400"] {
            assert!(check_quantity(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn quantity_values_round_up_to_thousandths() {
        assert_eq!(quantity_millis("500m"), Ok(500));
        assert_eq!(quantity_millis("1Ki"), Ok(1024 * 1000));
        assert_eq!(quantity_millis("1u"), Ok(1));
        assert!(quantity_millis("99999999999999999999999999999999999999Ei")
            .unwrap_err()
            .contains("too large"));
    }
}

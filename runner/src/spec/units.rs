//! Durations, byte sizes and CPU counts as Compose writes them, parsed the
//! way the Docker CLI parses them (Go's `time.ParseDuration`, go-units'
//! `RAMInBytes`, the CLI's `ParseCPUs`), so a file means the same to
//! Slipway as to `docker stack deploy`.

/// Nanoseconds of a Go duration: `1m30s`, `10s`, `500ms`, `1.5h`, `0`.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let err = || format!("invalid duration {text:?} (examples: 10s, 1m30s, 500ms)");
    let s = text.trim();
    let (negative, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(err());
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        if num_len == 0 {
            return Err(err());
        }
        let number: f64 = rest[..num_len].parse().map_err(|_| err())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(err()),
        };
        rest = &rest[unit_len..];
        total += number * unit;
    }
    if total > i64::MAX as f64 {
        return Err(err());
    }
    let nanos = total.round() as i64;
    Ok(if negative { -nanos } else { nanos })
}

/// Bytes of a size: `64M`, `1g`, `512k`, `1.5GB`, `1000` (binary units,
/// case-insensitive, as `docker` reads `--memory`).
pub fn parse_bytes(text: &str) -> Result<i64, String> {
    let err = || format!("invalid size {text:?} (examples: 64M, 1g, 512k)");
    let s = text.trim().to_ascii_lowercase();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let number: f64 = s[..split].parse().map_err(|_| err())?;
    let multiplier: f64 = match s[split..].trim() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024f64.powi(4),
        "p" | "pb" | "pib" => 1024f64.powi(5),
        _ => return Err(err()),
    };
    Ok((number * multiplier) as i64)
}

/// Nano-CPUs of a CPU count: `0.5` → 500000000.
pub fn parse_cpus(text: &str) -> Result<i64, String> {
    let err = || format!("invalid CPU count {text:?} (examples: 0.5, 2)");
    let s = text.trim();
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() && frac.is_empty()
        || !whole.chars().all(|c| c.is_ascii_digit())
        || !frac.chars().all(|c| c.is_ascii_digit())
    {
        return Err(err());
    }
    if frac.trim_end_matches('0').len() > 9 {
        return Err(format!("CPU count {text:?} is too precise"));
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| err())?
    };
    let mut frac_digits = frac.trim_end_matches('0').to_owned();
    while frac_digits.len() < 9 {
        frac_digits.push('0');
    }
    let frac: i64 = frac_digits.parse().map_err(|_| err())?;
    whole
        .checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(frac))
        .ok_or_else(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(10_000_000_000));
        assert_eq!(parse_duration("1m30s"), Ok(90_000_000_000));
        assert_eq!(parse_duration("500ms"), Ok(500_000_000));
        assert_eq!(parse_duration("1.5h"), Ok(5_400_000_000_000));
        assert_eq!(parse_duration("2h45m10s100ms"), Ok(9_910_100_000_000));
        assert_eq!(parse_duration("0"), Ok(0));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("ten seconds").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("64M"), Ok(64 * 1024 * 1024));
        assert_eq!(parse_bytes("1g"), Ok(1 << 30));
        assert_eq!(parse_bytes("512kb"), Ok(512 * 1024));
        assert_eq!(parse_bytes("1000"), Ok(1000));
        assert!(parse_bytes("lots").is_err());
    }

    #[test]
    fn cpus() {
        assert_eq!(parse_cpus("0.5"), Ok(500_000_000));
        assert_eq!(parse_cpus("2"), Ok(2_000_000_000));
        assert_eq!(parse_cpus(".25"), Ok(250_000_000));
        assert!(parse_cpus("0.0000000001").is_err());
        assert!(parse_cpus("half").is_err());
    }
}

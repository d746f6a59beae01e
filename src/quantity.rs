//! Kubernetes storage quantities: reading one (`10Gi`, `500M`) into bytes, and writing
//! bytes back for people (`2Gi`, `1.5Mi`). Pure: no I/O; every layer may use it.

/// Parses a Kubernetes quantity (`10Gi`, `500M`, `1e3`, `1.5Ti`) into bytes.
pub fn quantity_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let factor: f64 = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "m" => 1e-3,
        _ => return None,
    };
    let bytes = value * factor;
    (bytes.is_finite() && bytes >= 0.0).then(|| bytes.ceil() as u64)
}

/// Bytes in binary units as Kubernetes quantities write them (`2Gi`, `1.5Mi`).
pub fn human_bytes(bytes: u64) -> String {
    let units = ["", "Ki", "Mi", "Gi", "Ti", "Pi"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value.fract() == 0.0 {
        format!("{value}{}", units[unit])
    } else {
        format!("{value:.1}{}", units[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse() {
        assert_eq!(quantity_bytes("10Gi"), Some(10 * 1024 * 1024 * 1024));
        assert_eq!(quantity_bytes("500M"), Some(500_000_000));
        assert_eq!(quantity_bytes("1e3"), Some(1000));
        assert_eq!(quantity_bytes("1.5Ki"), Some(1536));
        assert_eq!(quantity_bytes("lots"), None);
    }

    #[test]
    fn bytes_are_written_in_binary_units() {
        assert_eq!(human_bytes(2 * 1024 * 1024 * 1024), "2Gi");
        assert_eq!(human_bytes(1536 * 1024), "1.5Mi");
        assert_eq!(human_bytes(100), "100");
    }
}

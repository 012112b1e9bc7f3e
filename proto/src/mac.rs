//! MAC addresses as the proto carries them (`NicSpec.mac`, `InterfaceConfig.mac`): six
//! colon-separated hex bytes, either case. Shared by the shim (the tap's guest side) and the
//! agent (finding the interface).

/// Parses `aa:bb:cc:dd:ee:ff` (either case); `None` for anything else.
pub fn parse_mac(mac: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = mac.split(':');
    for byte in &mut out {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn six_hex_bytes_and_nothing_else() {
        assert_eq!(
            parse_mac("52:54:00:AB:cd:01"),
            Some([0x52, 0x54, 0x00, 0xab, 0xcd, 0x01])
        );
        for bad in [
            "",
            "52:54:00:ab:cd",
            "52:54:00:ab:cd:01:02",
            "5:54:00:ab:cd:01",
            "zz:54:00:ab:cd:01",
            "52-54-00-ab-cd-01",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
    }
}

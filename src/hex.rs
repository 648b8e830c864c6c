//! Lower-case hex of bytes: MACs on the hop header, validators in chunk keys, key material
//! that is not visible ASCII. One encoder, written into one `String`.

use std::fmt::Write;

pub(crate) fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn two_lower_case_digits_per_byte() {
        assert_eq!(super::encode(&[0x00, 0x0a, 0xff]), "000aff");
        assert_eq!(super::encode(&[]), "");
    }
}

//! Text Accessrail writes to TestRail: no control or invisible format characters. A name or
//! email with a right-to-left override (U+202E) or a zero-width space displays as something
//! it is not, in TestRail and in every report.

/// The first control or format character in `s` (Unicode categories Cc and Cf), if any.
pub fn hidden_char(s: &str) -> Option<char> {
    s.chars().find(|&c| c.is_control() || is_format(c))
}

/// Unicode's format characters (category Cf): bidi controls, zero-width characters, the soft
/// hyphen, the byte-order mark, tags.
fn is_format(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{0600}'..='\u{0605}'
            | '\u{061C}'
            | '\u{06DD}'
            | '\u{070F}'
            | '\u{0890}'..='\u{0891}'
            | '\u{08E2}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0001}'
            | '\u{E0020}'..='\u{E007F}'
    )
}

/// Refuses text with hidden characters, naming the field and the character's code point.
pub fn check_visible(field: &str, s: &str) -> Result<(), String> {
    match hidden_char(s) {
        Some(c) => Err(format!(
            "the {field} contains an invisible or control character (U+{:04X}); type it again without it",
            u32::from(c)
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_bidi_zero_width_and_control_characters() {
        assert_eq!(hidden_char("alice@example.com"), None);
        assert_eq!(hidden_char("Zoë Łukasz 李"), None);
        assert_eq!(hidden_char("evil\u{202E}moc.elpmaxe@x"), Some('\u{202E}'));
        assert_eq!(hidden_char("a\u{200B}b"), Some('\u{200B}'));
        assert_eq!(hidden_char("\u{FEFF}bom"), Some('\u{FEFF}'));
        assert_eq!(hidden_char("line\nbreak"), Some('\n'));
        assert_eq!(hidden_char("tag\u{E0041}"), Some('\u{E0041}'));
        let err = check_visible("email", "a\u{2066}b").unwrap_err();
        assert!(err.contains("U+2066") && err.contains("email"), "{err}");
    }
}

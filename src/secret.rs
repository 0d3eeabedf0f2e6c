//! `Secret<T>`: a wrapper for tokens, client secrets and passwords that cannot leak through
//! `Debug`, `Display` or serde serialization. Reading the value is an explicit `expose()`, so
//! every place that touches a secret is greppable.

use std::fmt;

/// A value that must never appear in logs, status replies or error messages.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a value.
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// Reads the value. Call sites are the only places secrets flow out of this type.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T> serde::Serialize for Secret<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn secret_debug_and_display_are_redacted() {
        let s = Secret::new("ya29.token".to_string());
        assert!(!format!("{s:?}").contains("ya29"));
        assert!(!format!("{s}").contains("ya29"));
        assert_eq!(s.expose(), "ya29.token");
        let json = serde_json::to_string(&s).unwrap_or_default();
        assert!(!json.contains("ya29"));
    }
}

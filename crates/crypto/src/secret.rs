use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A secret value: `Debug` prints `<secret>`, there is no `Serialize` or `Display`, the memory
/// is zeroized on drop, and the value is reached only through [`Secret::expose_secret`].
pub struct Secret<T: Zeroize>(Box<T>);

pub type SecretBytes = Secret<Vec<u8>>;
pub type SecretString = Secret<String>;

impl<T: Zeroize> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(Box::new(value))
    }

    /// The one way to read the value; grep for it to audit every use.
    pub fn expose_secret(&self) -> &T {
        &self.0
    }
}

impl<T: Zeroize> Drop for Secret<T> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl<T: Zeroize> ZeroizeOnDrop for Secret<T> {}

impl<T: Zeroize> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl<T: Zeroize + Clone> Clone for Secret<T> {
    fn clone(&self) -> Self {
        Self::new(self.expose_secret().clone())
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl From<Vec<u8>> for SecretBytes {
    fn from(value: Vec<u8>) -> Self {
        Self::new(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = SecretString::from("hunter2-canary".to_string());
        assert_eq!(format!("{s:?}"), "<secret>");
        assert_eq!(format!("{:?}", Some(&s)), "Some(<secret>)");
        assert_eq!(s.expose_secret(), "hunter2-canary");
    }
}

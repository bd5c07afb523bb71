//! Passphrases for the root or local key: `PORTCULLIS_PASSPHRASE`, else the terminal.

pub use portcullis_keystore::terminal::Prompt;

/// Security-key prompts on the terminal: "touch your key" on stderr, the PIN read without echo.
#[derive(Debug)]
pub struct KeyPrompt;

impl portcullis_client::security_key::KeyPrompts for KeyPrompt {
    fn pin(&self) -> Option<String> {
        rpassword::prompt_password("Security key PIN: ").ok()
    }

    fn touch(&self) {
        eprintln!("Touch your security key…");
    }
}

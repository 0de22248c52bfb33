//! Domain value types: once you hold one, it is valid (they validate on construction).

pub(crate) mod amr;
pub(crate) mod email;
pub(crate) mod password;
pub(crate) mod user;

pub use amr::Amr;
pub use email::{Email, EmailError};
pub use password::{NewPassword, PasswordAttempt, PasswordError};
pub use user::{Role, User, UserName, UserNameError};

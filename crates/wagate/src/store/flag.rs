//! Booleans across dialects: PostgreSQL columns are `BOOLEAN`; SQLite has no boolean type
//! that sqlx's `Any` driver maps, so its columns are `INTEGER` 0/1. [`Flag`] decodes either,
//! and records turn it into `bool` with `#[sqlx(try_from = "Flag")]`.

use sqlx::any::{Any, AnyTypeInfo, AnyValueRef};
use sqlx::error::BoxDynError;
use sqlx::{Decode, Type};

#[derive(Debug, Clone, Copy)]
pub struct Flag(pub bool);

impl From<Flag> for bool {
    fn from(f: Flag) -> bool {
        f.0
    }
}

impl Type<Any> for Flag {
    fn type_info() -> AnyTypeInfo {
        <bool as Type<Any>>::type_info()
    }

    fn compatible(ty: &AnyTypeInfo) -> bool {
        <bool as Type<Any>>::compatible(ty)
            || <i64 as Type<Any>>::compatible(ty)
            || <i32 as Type<Any>>::compatible(ty)
            || <i16 as Type<Any>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Any> for Flag {
    fn decode(value: AnyValueRef<'r>) -> Result<Self, BoxDynError> {
        match <bool as Decode<Any>>::decode(value.clone()) {
            Ok(b) => Ok(Flag(b)),
            Err(_) => <i64 as Decode<Any>>::decode(value).map(|i| Flag(i != 0)),
        }
    }
}

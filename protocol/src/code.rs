//! Enums of short text codes that one side writes into JSON and the other reads (the kind
//! of a push notice, the status of an offer). One definition makes both the codes and the
//! reader's tolerance: a code this version does not know comes from a newer peer, so it is
//! kept as `Unknown` instead of failing the whole message.

/// Longest unknown code kept; anything longer is cut, so a hostile or broken peer cannot
/// make a reader hold on to a long string it does not understand.
pub const MAX_UNKNOWN_CODE_CHARS: usize = 32;

/// `code_enum! { /// docs  pub enum Name { /// docs  Variant = "code", ... } }` defines the
/// enum with an `Unknown { code }` variant, `code()`, `from_code()`, `KNOWN`, `Display` and
/// serde as the code string.
macro_rules! code_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $code:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A code this version does not know (a newer peer wrote it), at most
            /// [`crate::code::MAX_UNKNOWN_CODE_CHARS`] characters of it.
            Unknown { code: String },
        }

        impl $name {
            /// Every value this version knows, in declaration order.
            pub const KNOWN: &'static [$name] = &[$($name::$variant),+];

            pub fn code(&self) -> &str {
                match self {
                    $( $name::$variant => $code, )+
                    $name::Unknown { code } => code,
                }
            }

            /// Never fails: a code this version does not know becomes `Unknown`.
            pub fn from_code(code: &str) -> Self {
                match code {
                    $( $code => $name::$variant, )+
                    other => $name::Unknown {
                        code: other
                            .chars()
                            .take($crate::code::MAX_UNKNOWN_CODE_CHARS)
                            .collect(),
                    },
                }
            }

            pub fn is_known(&self) -> bool {
                !matches!(self, $name::Unknown { .. })
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.code())
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.code())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let code = <String as ::serde::Deserialize>::deserialize(d)?;
                Ok(Self::from_code(&code))
            }
        }
    };
}

pub(crate) use code_enum;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    code_enum! {
        /// For the tests.
        pub enum Colour {
            Red = "red",
            DarkBlue = "dark_blue",
        }
    }

    #[test]
    fn codes_round_trip_and_unknown_ones_are_kept_short() {
        for c in Colour::KNOWN {
            assert_eq!(&Colour::from_code(c.code()), c);
            assert!(c.is_known());
            let json = serde_json::to_string(c).unwrap();
            assert_eq!(json, format!("\"{c}\""));
            assert_eq!(&serde_json::from_str::<Colour>(&json).unwrap(), c);
        }
        assert_eq!(Colour::DarkBlue.code(), "dark_blue");
        let long = "x".repeat(100);
        let unknown = Colour::from_code(&long);
        assert_eq!(unknown.code().len(), super::MAX_UNKNOWN_CODE_CHARS);
        assert!(!unknown.is_known());
        assert_eq!(
            serde_json::from_str::<Colour>("\"green\"").unwrap(),
            Colour::Unknown {
                code: "green".into()
            }
        );
        // Case matters: codes are written by programs, not people.
        assert!(!Colour::from_code("Red").is_known());
        assert!(serde_json::from_str::<Colour>("1").is_err());
    }
}

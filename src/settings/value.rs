//! Each setting's values as text: parsed, checked and shown.

use super::*;

/// A type a setting can have: read from the text of a flag, a variable or
/// the config file, and shown by `o1 config`.
pub trait SettingValue: Sized {
    /// `Err` completes the sentence "`key` …".
    fn parse(text: &str) -> Result<Self, String>;
    fn show(&self) -> String;
}

macro_rules! from_str_values {
    ($($ty:ty: $what:literal),*) => {$(
        impl SettingValue for $ty {
            fn parse(text: &str) -> Result<Self, String> {
                text.trim().parse().map_err(|_| format!("is {text:?}: {}", $what))
            }
            fn show(&self) -> String {
                self.to_string()
            }
        }
    )*};
}

from_str_values!(u16: "a whole number", u32: "a whole number", usize: "a whole number", f32: "a number", bool: "true or false");

impl SettingValue for String {
    fn parse(text: &str) -> Result<Self, String> {
        Ok(text.to_string())
    }
    fn show(&self) -> String {
        self.clone()
    }
}

impl SettingValue for OutputType {
    fn parse(text: &str) -> Result<Self, String> {
        text.parse()
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

impl SettingValue for GpuLayers {
    fn parse(text: &str) -> Result<Self, String> {
        text.parse()
    }
    fn show(&self) -> String {
        match self {
            GpuLayers::Auto => "auto".into(),
            GpuLayers::All => "all".into(),
            GpuLayers::Count(n) => n.to_string(),
        }
    }
}

macro_rules! value_enum_values {
    ($($ty:ty),*) => {$(
        impl SettingValue for $ty {
            fn parse(text: &str) -> Result<Self, String> {
                <$ty as ValueEnum>::from_str(text, true).map_err(|_| {
                    let names: Vec<String> =
                        <$ty>::value_variants().iter().map(|v| v.show()).collect();
                    format!("is {text:?}: {}", names.join(" or "))
                })
            }
            fn show(&self) -> String {
                self.to_possible_value()
                    .map(|v| v.get_name().to_string())
                    .unwrap_or_default()
            }
        }
    )*};
}

value_enum_values!(KvType, Lookup, OnFull, ReasoningView);

impl SettingValue for Size {
    fn parse(text: &str) -> Result<Self, String> {
        text.parse().map_err(|e: String| format!("is {e}"))
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

/// What `o1 config`, the config file's check and the flags' help need of a
/// setting, whatever its type.
pub trait AnySetting {
    fn key(&self) -> &'static str;
    fn env(&self) -> &'static str;
    fn help(&self) -> &'static str;
    /// The built-in default as text.
    fn builtin_text(&self) -> String;
    /// The built-in default, if it is a fixed value.
    fn fixed_default(&self) -> Option<String>;
    /// Whether `text` is a valid value.
    fn check(&self, text: &str) -> Result<(), String>;
    /// The value without flags, as text, and where it came from.
    fn effective(&self, settings: &Settings) -> Result<(String, Source), SettingsError>;
}

impl<T: SettingValue> AnySetting for Setting<T> {
    fn key(&self) -> &'static str {
        self.key
    }
    fn env(&self) -> &'static str {
        self.env
    }
    fn help(&self) -> &'static str {
        self.help
    }
    fn builtin_text(&self) -> String {
        match &self.builtin {
            Value(_) => self.fixed_default().unwrap_or_default(),
            Derived(how) => how.to_string(),
        }
    }
    fn fixed_default(&self) -> Option<String> {
        match &self.builtin {
            Value(value) => Some(value().show()),
            Derived(_) => None,
        }
    }
    fn check(&self, text: &str) -> Result<(), String> {
        T::parse(text).and_then(|v| (self.check)(&v))
    }
    fn effective(&self, settings: &Settings) -> Result<(String, Source), SettingsError> {
        let (value, source) = settings.resolve(self, None)?;
        Ok((
            value.map_or_else(|| self.builtin_text(), |v| v.show()),
            source,
        ))
    }
}

/// The setting whose flag is `--flag`, if any.
pub fn for_flag(flag: &str) -> Option<&'static dyn AnySetting> {
    ALL.iter()
        .copied()
        .find(|s| s.key().replace('_', "-") == flag)
}

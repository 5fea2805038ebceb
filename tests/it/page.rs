//! The page as a person uses it in real Chromium: pasting, phone widths, contrast, keyboard
//! focus, font size, offline, screen-reader announcements. Screenshots in target/e2e.

//! Screenshots: X `GetImage` of a window (or the whole screen) encoded as PNG, for unknown
//! dialogs (saved in the state dir and reported) and for OCR of a dialog's text.
//!
//! Blocking; call from `spawn_blocking`. Opens its own short-lived connection, so it can be
//! used at any time without touching the watcher's or typist's connection.

use std::time::{Duration, Instant};

use xcb::x;

use super::{connect, root_of, window_from_id, ConnectError, DisplayTarget};

/// Failure to take a screenshot.
#[derive(Debug, thiserror::Error)]
pub enum ScreenshotError {
    /// Could not connect.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// An X request failed (e.g. the window is gone or not viewable).
    #[error("screenshot: x11 {request} failed: {detail}")]
    Request {
        /// The request.
        request: &'static str,
        /// The X error.
        detail: String,
    },
    /// The pixel format is not one we convert (only 24/32 bits per pixel, 8 bits per
    /// channel, as Xvfb `-screen 0 WxHx24` gives).
    #[error("screenshot: unsupported pixel format (depth {depth}, {bpp} bits per pixel)")]
    UnsupportedFormat {
        /// Drawable depth.
        depth: u8,
        /// Bits per pixel of that depth's pixmap format.
        bpp: u8,
    },
    /// PNG encoding failed.
    #[error("screenshot: png encoding: {0}")]
    Png(#[from] png::EncodingError),
}

fn req_err(request: &'static str) -> impl FnOnce(xcb::Error) -> ScreenshotError {
    move |e| ScreenshotError::Request {
        request,
        detail: format!("{e:?}"),
    }
}

/// A captured image: RGB, 8 bits per channel, row-major.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 3` bytes.
    pub rgb: Vec<u8>,
}

impl Image {
    /// True if every pixel has the same colour (e.g. a window Swing has not painted yet).
    pub fn is_uniform(&self) -> bool {
        let first = self.rgb.get(..3);
        self.rgb.chunks(3).all(|p| Some(p) == first)
    }

    /// Decodes an 8-bit RGB PNG (what [`Image::to_png`] writes; fixtures and saved
    /// screenshots).
    pub fn from_png(bytes: &[u8]) -> Result<Image, String> {
        let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
            .read_info()
            .map_err(|e| format!("png header: {e}"))?;
        let mut rgb = vec![0; reader.output_buffer_size()];
        let info = reader
            .next_frame(&mut rgb)
            .map_err(|e| format!("png frame: {e}"))?;
        if info.color_type != png::ColorType::Rgb || info.bit_depth != png::BitDepth::Eight {
            return Err(format!(
                "png is {:?} {:?}, not 8-bit RGB",
                info.color_type, info.bit_depth
            ));
        }
        rgb.truncate(info.buffer_size());
        Ok(Image {
            width: info.width,
            height: info.height,
            rgb,
        })
    }

    /// Encodes as PNG.
    pub fn to_png(&self) -> Result<Vec<u8>, ScreenshotError> {
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, self.width, self.height);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            let mut writer = enc.write_header()?;
            writer.write_image_data(&self.rgb)?;
            writer.finish()?;
        }
        Ok(out)
    }
}

/// Like [`screenshot`], but waits (up to `timeout`) until the window shows more than one
/// colour; see [`capture_painted`].
pub fn screenshot_painted(
    target: &DisplayTarget,
    window: Option<u32>,
    timeout: Duration,
) -> Result<Vec<u8>, ScreenshotError> {
    capture_painted(target, window, timeout)?.to_png()
}

/// Like [`capture`], but retries every 25 ms, up to `timeout`, while the image is one flat
/// colour. Swing paints a freshly mapped window 30–40 ms after its MapNotify (measured in
/// `tests/x11.rs`), so a capture taken on the `Mapped` event is blank. Returns the last
/// capture at the deadline (a window may really be blank).
pub fn capture_painted(
    target: &DisplayTarget,
    window: Option<u32>,
    timeout: Duration,
) -> Result<Image, ScreenshotError> {
    let start = Instant::now();
    loop {
        let image = capture(target, window)?;
        if !image.is_uniform() || start.elapsed() >= timeout {
            return Ok(image);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// How long a window must stay unchanged to count as settled. Swing's repaint of a list
/// after its selection moved lands 100-140 ms after the selection event (measured in
/// `tests/screen.rs` under Xvfb), so two equal captures 40 ms apart can both be stale.
const SETTLED_FOR: Duration = Duration::from_millis(200);

/// A capture of a window that has stopped changing: captures every 40 ms until the pixels
/// have not changed for [`SETTLED_FOR`], up to `timeout`; then the last one. The caret's
/// blink (every 500 ms) leaves a stable 200 ms inside every blink period.
pub fn capture_settled(
    target: &DisplayTarget,
    window: Option<u32>,
    timeout: Duration,
) -> Result<Image, ScreenshotError> {
    let start = Instant::now();
    let mut last = capture_painted(target, window, timeout)?;
    let mut since = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(40));
        let next = capture(target, window)?;
        if next != last {
            since = Instant::now();
            last = next;
        } else if since.elapsed() >= SETTLED_FOR {
            return Ok(next);
        }
        if start.elapsed() >= timeout {
            return Ok(last);
        }
    }
}

/// PNG of `window` (its own contents, size of the window; only the on-screen part if it
/// extends beyond the screen) or of the whole screen (`None`).
pub fn screenshot(target: &DisplayTarget, window: Option<u32>) -> Result<Vec<u8>, ScreenshotError> {
    capture(target, window)?.to_png()
}

/// Raw RGB capture; see [`screenshot`].
pub fn capture(target: &DisplayTarget, window: Option<u32>) -> Result<Image, ScreenshotError> {
    let (conn, screen) = connect(target, &[])?;
    let root = root_of(&conn, screen).ok_or(ScreenshotError::Request {
        request: "setup",
        detail: format!("no screen {screen}"),
    })?;
    let window = window.map(window_from_id).unwrap_or(root);
    let geom = conn
        .wait_for_reply(conn.send_request(&x::GetGeometry {
            drawable: x::Drawable::Window(window),
        }))
        .map_err(req_err("GetGeometry"))?;
    let get = |drawable: x::Window, x: i16, y: i16, width: u16, height: u16| {
        conn.wait_for_reply(conn.send_request(&x::GetImage {
            format: x::ImageFormat::ZPixmap,
            drawable: x::Drawable::Window(drawable),
            x,
            y,
            width,
            height,
            plane_mask: u32::MAX,
        }))
    };
    // With no compositing, GetImage of a window returns what is on screen inside it. A
    // window partly off screen gives BadMatch; then take the visible part from the root.
    let (mut width, mut height) = (geom.width(), geom.height());
    let image = match get(window, 0, 0, width, height) {
        Ok(image) => image,
        Err(xcb::Error::Protocol(_)) if window != root => {
            let origin = conn
                .wait_for_reply(conn.send_request(&x::TranslateCoordinates {
                    src_window: window,
                    dst_window: root,
                    src_x: 0,
                    src_y: 0,
                }))
                .map_err(req_err("TranslateCoordinates"))?;
            let screen = conn
                .wait_for_reply(conn.send_request(&x::GetGeometry {
                    drawable: x::Drawable::Window(root),
                }))
                .map_err(req_err("GetGeometry(root)"))?;
            let clip = |pos: i16, len: u16, max: u16| -> (i16, u16) {
                let start = i32::from(pos).clamp(0, i32::from(max));
                let end = (i32::from(pos) + i32::from(len)).clamp(0, i32::from(max));
                // Both lie in 0..=max (a u16), so the casts are lossless.
                (start as i16, (end - start) as u16)
            };
            let (x, w) = clip(origin.dst_x(), width, screen.width());
            let (y, h) = clip(origin.dst_y(), height, screen.height());
            if w == 0 || h == 0 {
                return Err(ScreenshotError::Request {
                    request: "GetImage",
                    detail: "window is entirely off screen".into(),
                });
            }
            (width, height) = (w, h);
            get(root, x, y, w, h).map_err(req_err("GetImage(root)"))?
        }
        Err(e) => return Err(req_err("GetImage")(e)),
    };
    let depth = image.depth();
    let setup = conn.get_setup();
    let bpp = setup
        .pixmap_formats()
        .iter()
        .find(|f| f.depth() == depth)
        .map(|f| f.bits_per_pixel())
        .unwrap_or(0);
    let visual = setup
        .roots()
        .flat_map(|s| s.allowed_depths())
        .flat_map(|d| d.visuals())
        .find(|v| v.visual_id() == image.visual());
    let (rm, gm, bm) = visual
        .map(|v| (v.red_mask(), v.green_mask(), v.blue_mask()))
        .unwrap_or((0xff0000, 0x00ff00, 0x0000ff));
    let lsb_first = setup.image_byte_order() == x::ImageOrder::LsbFirst;
    let rgb = to_rgb(
        image.data(),
        usize::from(width),
        usize::from(height),
        bpp,
        lsb_first,
        (rm, gm, bm),
    )
    .ok_or(ScreenshotError::UnsupportedFormat { depth, bpp })?;
    Ok(Image {
        width: u32::from(width),
        height: u32::from(height),
        rgb,
    })
}

/// Converts ZPixmap data (rows padded to 32 bits) to packed RGB. `None` for formats other
/// than 24/32 bpp with 8-bit channel masks.
fn to_rgb(
    data: &[u8],
    width: usize,
    height: usize,
    bpp: u8,
    lsb_first: bool,
    masks: (u32, u32, u32),
) -> Option<Vec<u8>> {
    let bytes_pp = match bpp {
        32 => 4,
        24 => 3,
        _ => return None,
    };
    let shift = |m: u32| -> Option<u32> {
        (m.count_ones() == 8 && (m >> m.trailing_zeros()) == 0xff).then_some(m.trailing_zeros())
    };
    let (rs, gs, bs) = (shift(masks.0)?, shift(masks.1)?, shift(masks.2)?);
    let stride = (width * bytes_pp + 3) & !3;
    if data.len() < stride * height {
        return None;
    }
    let mut out = Vec::with_capacity(width * height * 3);
    for row in data.chunks(stride).take(height) {
        for px in row[..width * bytes_pp].chunks(bytes_pp) {
            let mut v = 0u32;
            for (i, b) in px.iter().enumerate() {
                let i = if lsb_first { i } else { bytes_pp - 1 - i };
                v |= u32::from(*b) << (8 * i);
            }
            out.extend_from_slice(&[(v >> rs) as u8, (v >> gs) as u8, (v >> bs) as u8]);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bgrx_rows_with_padding_convert_to_rgb() {
        // 1x2 image, 32 bpp little-endian BGRX: red, then blue.
        let data = [0, 0, 0xff, 0, 0xff, 0, 0, 0];
        let rgb = to_rgb(&data, 1, 2, 32, true, (0xff0000, 0xff00, 0xff)).expect("format");
        assert_eq!(rgb, vec![0xff, 0, 0, 0, 0, 0xff]);
        // 24 bpp, width 1: 3 bytes + 1 byte row padding.
        let data = [0x10, 0x20, 0x30, 0, 0x01, 0x02, 0x03, 0];
        let rgb = to_rgb(&data, 1, 2, 24, true, (0xff0000, 0xff00, 0xff)).expect("format");
        assert_eq!(rgb, vec![0x30, 0x20, 0x10, 0x03, 0x02, 0x01]);
    }

    #[test]
    fn uniform_images_are_detected() {
        let flat = Image {
            width: 2,
            height: 1,
            rgb: vec![7, 7, 7, 7, 7, 7],
        };
        let two = Image {
            width: 2,
            height: 1,
            rgb: vec![7, 7, 7, 7, 7, 8],
        };
        assert!(flat.is_uniform());
        assert!(!two.is_uniform());
    }

    #[test]
    fn sixteen_bit_is_unsupported() {
        assert!(to_rgb(&[0; 8], 2, 2, 16, true, (0xf800, 0x7e0, 0x1f)).is_none());
        assert!(to_rgb(&[0; 4], 1, 1, 32, true, (0xf800, 0x7e0, 0x1f)).is_none());
    }
}

/**
 * A minimum transfer rate for request bodies: a client that trickles an upload (a few bytes a
 * second keep every idle timeout from firing) would otherwise hold a connection, a multipart
 * upload and memory for as long as it likes. Measured on the socket's own byte counter, so the
 * body stream is never touched; large uploads at any reasonable speed pass untouched.
 */
import type { IncomingMessage } from "node:http";
import { UploadTooSlowError } from "../../shared/errors.ts";

export interface UploadRateOptions {
  /** Below this, averaged over a window, the upload is cut off. 0 turns the check off. */
  minBytesPerSecond: number;
  /** The averaging window (and the first check comes after one). */
  windowMs: number;
}

/**
 * Calls `onSlow` once if a window passes in which less than `minBytesPerSecond × window`
 * arrived before the body was complete. Returns a function that stops watching. Does nothing
 * for a request without a real socket (`inject()`).
 */
export function watchUploadRate(
  request: IncomingMessage,
  options: UploadRateOptions,
  onSlow: (err: UploadTooSlowError) => void,
): () => void {
  const socket = request.socket as { bytesRead?: number } | null;
  if (options.minBytesPerSecond <= 0 || typeof socket?.bytesRead !== "number") return () => {};
  const minPerWindow = (options.minBytesPerSecond * options.windowMs) / 1000;
  let last = socket.bytesRead;
  const timer = setInterval(() => {
    if (request.complete) {
      clearInterval(timer);
      return;
    }
    const now = socket.bytesRead ?? last;
    const got = now - last;
    last = now;
    if (got >= minPerWindow) return;
    clearInterval(timer);
    const rate = Math.round((got * 1000) / options.windowMs);
    onSlow(
      new UploadTooSlowError(
        `the upload arrived at ${rate} bytes/s over ${options.windowMs / 1000} s, under the minimum of ${options.minBytesPerSecond} bytes/s: cut off, nothing was stored`,
        { details: { bytesPerSecond: rate, minimum: options.minBytesPerSecond } },
      ),
    );
  }, options.windowMs);
  timer.unref();
  return () => clearInterval(timer);
}

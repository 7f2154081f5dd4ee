/**
 * Errors a user can cause. Each has a stable code and a message that says what to do next;
 * the CLI prints the message on one line and exits non-zero (stack only with --debug).
 */
export type ErrorCode =
  | 'DIFFORMER_FILE_NOT_FOUND'
  | 'DIFFORMER_FILE_UNREADABLE'
  | 'DIFFORMER_LINE_COUNT_MISMATCH'
  | 'DIFFORMER_EMPTY_CORPUS'
  | 'DIFFORMER_INVALID_UTF8'
  | 'DIFFORMER_NOT_WRITABLE'
  | 'DIFFORMER_BAD_DICTIONARY'
  | 'DIFFORMER_DICTIONARY_MISMATCH'
  | 'DIFFORMER_UNKNOWN_NAME'
  | 'DIFFORMER_DUPLICATE_NAME'
  | 'DIFFORMER_BAD_OPTION'
  | 'DIFFORMER_BAD_CHECKPOINT'
  | 'DIFFORMER_BAD_DATA'
  | 'DIFFORMER_BACKEND'
  | 'DIFFORMER_NAN_LOSS'
  | 'DIFFORMER_USER_DIR';

export class DifformerError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'DifformerError';
    this.code = code;
  }
}

export function isDifformerError(e: unknown): e is DifformerError {
  return e instanceof DifformerError;
}

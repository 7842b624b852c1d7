/** Parsers for numeric command-line flags: one line naming the flag when a value is refused. */
import { InvalidArgumentError } from "commander";

/** A finite number passing `check` (`what` says what is expected, after "must be"). */
export function numberOption(flag: string, check: (n: number) => boolean, what: string) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === "" || !Number.isFinite(n) || !check(n)) {
      throw new InvalidArgumentError(`${flag} must be ${what}`);
    }
    return n;
  };
}

/** A whole number ≥ `min`. */
export const wholeNumberOption = (flag: string, min: number) =>
  numberOption(flag, (n) => Number.isInteger(n) && n >= min, `a whole number ≥ ${min}`);

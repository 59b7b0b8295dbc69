/** The part of picomatch 4's API that roamfs uses (the package ships no types). */
declare module 'picomatch' {
  interface PicomatchOptions {
    /** Match dot files with `*` and `**` (default false). */
    dot?: boolean;
    nocase?: boolean;
  }
  function picomatch(patterns: string | readonly string[], options?: PicomatchOptions): (path: string) => boolean;
  export default picomatch;
}

"""Worker modules the tests run under the emulator or in-process."""

"""The transcription worker: speech to text with Whisper on CTranslate2 (faster-whisper)."""

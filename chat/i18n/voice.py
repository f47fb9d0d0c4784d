"""Sentences of the voice routes and the page's microphone and speaker (``chat.voice``)."""

from chat.i18n.catalogue import entries

MESSAGES = entries(
    """
voice.not_audio
  en: This file is not audio that can be read (try WAV, MP3, OGG/Opus, WebM or M4A).
  zh: 无法读取这个文件中的音频（可使用 WAV、MP3、OGG/Opus、WebM 或 M4A）。
voice.silence
  en: No speech was heard in the recording.
  zh: 录音中没有听到说话声。
voice.too_long
  en: The recording is longer than {limit} seconds: send a shorter one.
  zh: 录音超过 {limit} 秒，请录一段短一些的。
voice.too_large
  en: The audio file is larger than {limit} MB.
  zh: 音频文件超过 {limit} MB。
voice.stt_off
  en: Speech to text is turned off on this server.
  zh: 此服务器未开启语音转文字。
voice.tts_off
  en: Text to speech is turned off on this server.
  zh: 此服务器未开启文字转语音。
voice.no_file
  en: send the audio as the multipart form field 'file'
  zh: 请以 multipart 表单字段 'file' 发送音频
voice.no_input
  en: input must be text of 1 to {limit} characters
  zh: input 必须是 1 到 {limit} 个字符的文本
voice.nothing_to_say
  en: There is nothing in this text that can be read aloud.
  zh: 这段文字里没有可以朗读的内容。
voice.bad_choice
  en: {field} must be one of: {choices}
  zh: {field} 只能是以下之一：{choices}
voice.bad_language
  en: language must be a language code such as en or zh, got {value}
  zh: language 必须是 en、zh 这样的语言代码，收到的是 {value}
voice.bad_voice
  en: unknown voice {value}
  zh: 未知的声音 {value}
voice.model_missing
  en: The speech model cannot be loaded; the operator has been told in the log.
  zh: 无法加载语音模型，详情已写入服务器日志。
# the page's microphone, speaker buttons and settings (chat/ui/assets/voice.js)
voice.page.mic
  en: Speak a message
  zh: 语音输入
voice.page.mic_stop
  en: Stop recording
  zh: 停止录音
voice.page.listening
  en: Listening… press the microphone again (or Esc) to stop.
  zh: 正在听……再按一次麦克风（或 Esc）结束。
voice.page.transcribing
  en: Transcribing…
  zh: 正在识别……
voice.page.read
  en: Read aloud
  zh: 朗读
voice.page.settings
  en: Voice
  zh: 语音
voice.page.send_now
  en: Send a recording at once
  zh: 录音后立即发送
voice.page.read_all
  en: Read every reply aloud
  zh: 自动朗读每条回复
voice.page.mic_denied
  en: The microphone is blocked: allow it in the browser's site settings.
  zh: 麦克风被阻止：请在浏览器的网站设置中允许使用。
voice.page.no_mic
  en: This browser cannot record here (a microphone needs HTTPS or localhost).
  zh: 此浏览器无法在这里录音（麦克风需要 HTTPS 或 localhost）。
voice.page.no_voice
  en: This browser has no voice to read aloud with: add one in the system's speech settings (on Linux, speech-dispatcher), or use another browser.
  zh: 此浏览器没有可用于朗读的语音：请在系统的语音设置中添加语音（Linux 上为 speech-dispatcher），或换一个浏览器。
voice.page.failed
  en: Voice failed: try again.
  zh: 语音出错，请重试。
"""
)

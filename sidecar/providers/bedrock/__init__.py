"""The Bedrock provider: OpenAI chat.completions served by Bedrock Runtime Converse/ConverseStream.

Pure translators (``request``, ``messages``, ``output``, ``response``, ``stream``, ``errors``),
the event-stream transcoder (``transcode``) and the only credentials/signing seam (``signing``).
"""

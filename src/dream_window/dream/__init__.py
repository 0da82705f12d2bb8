"""The dream: the controller's loop, the modes that plan and make frames, prompts, the buffer
between generation and display, and the files a frame is published to."""

"""The demo desktop: a virtual X server, our Tk form app, and a human-paced scripted session."""

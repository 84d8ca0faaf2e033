# Demo cog predictor for the molecule scenario molecule/deploy: the same HTTP server (coglet)
# as Replicate's images, without weights. Behaviour by environment, so one image covers
# every case:
#   SETUP_SECONDS  seconds that setup() sleeps, like a model loading its weights (default 2)
#   FAIL_SETUP=1   setup() raises, so the server reports SETUP_FAILED
#   GREETING       the word predict() puts before the text (default "hello")
# Its inputs are a string and an integer, so that the schema cases (coglet's HTTP 422 for "2" as an integer, an
# unknown input name) run against the real server: openapi_schema.json is their schema (see the Dockerfile).
import os
import time

from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def setup(self) -> None:
        print("demo setup: loading for %s s" % os.environ.get("SETUP_SECONDS", "2"), flush=True)
        time.sleep(float(os.environ.get("SETUP_SECONDS", "2")))
        if os.environ.get("FAIL_SETUP") == "1":
            raise RuntimeError("demo setup failed on purpose (FAIL_SETUP=1)")
        self.greeting = os.environ.get("GREETING", "hello")
        print("demo setup: done", flush=True)

    def predict(
        self,
        text: str = Input(description="Text to greet", default="world"),
        repeat: int = Input(description="Times the text is said", default=1, ge=1, le=3),
    ) -> str:
        if text == "fail":
            raise ValueError("demo prediction failed on purpose (text=fail)")
        if text == "slow":
            time.sleep(3)
        return "%s %s" % (self.greeting, " ".join([text] * repeat))

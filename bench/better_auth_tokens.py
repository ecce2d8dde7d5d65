"""Signs USERS users up at a Better Auth server and prints `user_id jwt` per
line: the EdDSA tokens its jwt() plugin issues, as a frontend would send them."""

import base64
import json
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor

base, users = sys.argv[1], int(sys.argv[2])


def call(path, body=None, session=None):
    headers = {"Content-Type": "application/json"}
    if session:
        headers["Authorization"] = f"Bearer {session}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{base}{path}", data=data, headers=headers)
    with urllib.request.urlopen(request) as response:
        return response.headers, json.load(response)


def token_for(n):
    headers, _ = call(
        "/api/auth/sign-up/email",
        {"email": f"bench{n}@example.com", "password": "bench-password-1", "name": f"Bench {n}"},
    )
    _, body = call("/api/auth/token", session=headers["set-auth-token"])
    jwt = body["token"]
    payload = jwt.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return f"{claims['sub']} {jwt}"


call("/api/auth/jwks")  # creates the key pair once, before concurrent sign-ups
with ThreadPoolExecutor(max_workers=4) as pool:
    for line in pool.map(token_for, range(1, users + 1)):
        print(line)

#!/usr/bin/env python3
"""The baseline of `make bench`: forwarding Signals events to X the way common integrations
do it -- read the events list, then one conversion per request, sequentially."""
import argparse, base64, hashlib, hmac, json, secrets, time, urllib.parse

import requests


def pct(s):
    return urllib.parse.quote(str(s), safe="-._~")


def oauth_header(method, url, a):
    params = {
        "oauth_consumer_key": a.consumer_key,
        "oauth_nonce": secrets.token_hex(16),
        "oauth_signature_method": "HMAC-SHA1",
        "oauth_timestamp": str(int(time.time())),
        "oauth_token": a.access_token,
        "oauth_version": "1.0",
    }
    normalized = "&".join(f"{pct(k)}={pct(v)}" for k, v in sorted(params.items()))
    base = "&".join([method, pct(url), pct(normalized)])
    key = f"{pct(a.consumer_secret)}&{pct(a.access_token_secret)}".encode()
    params["oauth_signature"] = base64.b64encode(
        hmac.new(key, base.encode(), hashlib.sha1).digest()).decode()
    return "OAuth " + ", ".join(f'{pct(k)}="{pct(v)}"' for k, v in sorted(params.items()))


def main():
    p = argparse.ArgumentParser()
    for name in ["hub-url", "signals-url", "x-url", "client", "app", "pixel", "event-id", "username",
                 "password", "consumer-key", "consumer-secret", "access-token",
                 "access-token-secret", "date-from", "date-to"]:
        p.add_argument("--" + name, required=True)
    a = p.parse_args()
    started = time.time()
    s = requests.Session()
    token = s.post(f"{a.hub_url}/token", json={"username": a.username, "password": a.password}).json()["access_token"]
    events, offset = [], 0
    while True:
        page = s.get(f"{a.signals_url}/v1/clients/{a.client}/apps/{a.app}/events",
                     params={"date_from": a.date_from, "date_to": a.date_to, "limit": 1000, "offset": offset},
                     headers={"Authorization": f"Bearer {token}"}).json()
        events += page["data"]
        offset += len(page["data"])
        if not page["data"] or offset >= page["total_count"]:
            break
    url = f"{a.x_url}/measurement/conversions/{a.pixel}"
    sent = 0
    for e in events:
        digits = "".join(c for c in str(e.get("phone", "")) if c.isdigit())
        date = e["date"]
        millis = date[20:23] if len(date) > 20 and date[19] == "." else ""
        conversion = {
            "conversion_time": f"{date[:19]}.{millis.ljust(3, '0')}Z",
            "event_id": a.event_id,
            "identifiers": [{"hashed_phone_number": hashlib.sha256(("+" + digits).encode()).hexdigest()}],
            "conversion_id": e["id"],
        }
        r = s.post(url, data=json.dumps({"conversions": [conversion]}),
                   headers={"Authorization": oauth_header("POST", url, a), "Content-Type": "application/json"})
        r.raise_for_status()
        sent += 1
    print(json.dumps({"events": len(events), "requests": sent, "seconds": round(time.time() - started, 2)}))


if __name__ == "__main__":
    main()

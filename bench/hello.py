"""The floor the benchmark compares against: a bare Flask JSON answer."""
from flask import Flask, jsonify

app = Flask(__name__)


@app.get("/hello")
def hello():
    return jsonify({"hello": "world"})

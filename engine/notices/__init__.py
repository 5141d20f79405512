"""Signed public notices (公示/公告): issue, render, sign, verify."""

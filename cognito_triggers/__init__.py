"""AWS Lambda handlers for the gateway's Cognito user-pool triggers.

Kept empty on purpose: Lambda imports ``cognito_triggers.post_confirmation`` and
``cognito_triggers.pre_token_generation`` directly, and each must start cold in well under
Cognito's 5-second budget without pulling in Flask, SQLAlchemy or the gateway.
"""

"""The REST resources under `<base>/v1/`, one module per group, each serving the sync and the async client."""
from .customers import Customers
from .meters import Meters
from .models import Models
from .requests import Requests
from .secret_keys import SecretKeys
from .spend_keys import SpendKeys
from .usage import Usage
from .wallet import Wallet
from .webhooks import Webhooks

__all__ = ["Customers", "Meters", "Models", "Requests", "SecretKeys", "SpendKeys", "Usage", "Wallet", "Webhooks"]

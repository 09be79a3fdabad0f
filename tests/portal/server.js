// Seed 002's backend ("Configure Your Backend"), unchanged except that the
// host and the credential come from the environment and that this process
// also serves the portal page (public/) so the page and /api share an origin.
const express = require('express');
const axios = require('axios');
const app = express();

app.use(express.json());
app.use(express.static(__dirname + '/public'));

// Your ToolJet configuration
const TOOLJET_HOST = process.env.IAM_HOST; // or http://localhost:3000
const TOOLJET_API_TOKEN = process.env.IAM_CREDENTIAL; // Keep this secret!

app.post('/api/get-tooljet-url', async (req, res) => {
  const { email, appId } = req.body;

  // Validate the request
  if (!email || !appId) {
    return res.status(400).json({ error: 'Email and appId are required' });
  }

  try {
    // Call ToolJet API to generate PAT
    const response = await axios.post(
      `${TOOLJET_HOST}/api/ext/users/personal-access-token`,
      {
        email: email,
        appId: appId,
        sessionExpiry: 60, // Session valid for 60 minutes
        patExpiry: 3600 // Token valid for 1 hour (3600 seconds)
      },
      {
        headers: {
          'Authorization': `Basic ${TOOLJET_API_TOKEN}`,
          'Content-Type': 'application/json'
        }
      }
    );

    // Return the redirect URL to frontend
    res.json({
      redirectUrl: response.data.redirectUrl
    });

  } catch (error) {
    console.error('ToolJet API Error:', error.response?.data || error.message);

    // Handle specific error cases
    if (error.response?.status === 404) {
      return res.status(404).json({ error: 'User not found in ToolJet' });
    }
    if (error.response?.status === 403) {
      return res.status(403).json({ error: 'User does not have access to this app' });
    }
    if (error.response?.status === 429) {
      return res.status(429).json({ error: 'Too many requests. Please try again later.' });
    }

    res.status(500).json({ error: 'Failed to generate embed URL' });
  }
});

app.listen(3001, () => {
  console.log('Server running on port 3001');
});
